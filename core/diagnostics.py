"""When to pay for per-step diagnostics: a budget in wall time, for live views.

The classifier's p(y | x_t) comes for free at steps where classifier guidance runs; anywhere else it
costs a classifier forward of its own (about a quarter of a step for guided-diffusion's 64×64 pair).
`DiagnosticsBudget` is a `diagnostics=` callable for `core.sample` that asks for them only at steps
whose frame a viewer will show, and only while their measured cost stays within `fraction` (3 %) of
the run's wall time so far: a curve sampled at a stride instead of a run made slower. Callers who
want every step pass `diagnostics=True` instead.
"""
from __future__ import annotations

import time
from typing import Callable

from .samplers import Step

DEFAULT_FRACTION = 0.03


class DiagnosticsBudget:
    """Decides, before each update k = 1 … n, whether the paid diagnostics are computed.

    Feed it every Step of the run with `observe` (index 0 first). Rules:
    - the first paid pass and the last step's are always made: the first measures the cost, and the
      curve then starts and ends where the run does (two passes: within the fraction for any run of
      more than 2·(pass ÷ step) ÷ fraction steps, e.g. 17 steps for a pass of a quarter step);
    - in between, only where `shown()` says the frame will be displayed, and only if the time spent
      on them, this pass and the last step's included, stays ≤ fraction × the run's wall time by
      the end of this step.
    clock: the wall clock (seconds); tests pass a fake one.
    """

    def __init__(self, fraction: float = DEFAULT_FRACTION, shown: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"The diagnostics budget is a fraction of the run's time in (0, 1], not {fraction}.")
        self.fraction = fraction
        self.shown = shown
        self.clock = clock
        self.num_steps = 0
        self.spent = 0.0  # seconds of paid diagnostics so far
        self.cost: float | None = None  # seconds of a paid pass: the least measured (a first pass is often slower)
        self.step_seconds = 0.0  # the latest update's time without diagnostics
        self._start: float | None = None

    def observe(self, step: Step) -> None:
        """Account for a finished step (call it for every Step, in order)."""
        if step.index == 0 or self._start is None:
            self.num_steps = step.num_steps
            self._start = self.clock()
        if step.index == 0:
            return
        self.step_seconds = step.seconds - step.diagnostics_seconds
        if step.diagnostics_seconds > 0.0:
            self.spent += step.diagnostics_seconds
            self.cost = min(self.cost or step.diagnostics_seconds, step.diagnostics_seconds)

    def __call__(self, k: int) -> bool:
        if self.cost is None or k >= self.num_steps:
            return True
        if self.shown is not None and not self.shown():
            return False
        elapsed = 0.0 if self._start is None else self.clock() - self._start
        return self.spent + 2 * self.cost <= self.fraction * (elapsed + self.step_seconds + self.cost)
