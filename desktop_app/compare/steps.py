"""Several runs on one scrubber: which step of each run goes with the shared position, and its picture. Qt-free.

Runs of the same length show the same step index. Runs of different lengths (a sweep over the number of
steps, or two saved runs) are aligned by noise level: the shared scrubber walks the longest run's steps,
and every other run shows its step whose noise level √(1−ᾱ_t) is nearest, so each picture is as far
from noise as the others. (Where a run has no noise-level track, the position is scaled to its length.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core.runs import NOISE, RunResult

from ..library.pngio import points_picture
from ..run.trajectory import Frames

VIEWS = {"xt": "x_t (noisy sample)", "x0": "x̂0 (predicted)"}


def reference_run(results: Sequence[RunResult]) -> int:
    """The index of the run whose steps the shared scrubber walks: the longest."""
    return max(range(len(results)), key=lambda i: len(results[i])) if results else 0


def aligned_steps(reference: RunResult, other: RunResult) -> np.ndarray:
    """For each step of `reference`, the step of `other` to show beside it (int array, len(reference))."""
    n, m = len(reference), len(other)
    if m == 0:
        return np.zeros(n, dtype=int)
    if n == m:
        return np.arange(n)
    ref, own = np.asarray(reference.track(NOISE), float), np.asarray(other.track(NOISE), float)
    if len(ref) != n or len(own) != m or not (np.isfinite(ref).all() and np.isfinite(own).all()):
        return np.round(np.arange(n) * (m - 1) / max(n - 1, 1)).astype(int)
    nearest = np.abs(ref[:, None] - own[None, :]).argmin(axis=1)  # noise falls monotonically: no ties across runs
    return nearest


class StepLock:
    """The runs shown together and, for a shared position, the step each one shows."""

    def __init__(self, results: Sequence[RunResult]):
        self.results = list(results)
        self.reference = reference_run(self.results)
        ref = self.results[self.reference] if self.results else None
        self.maps = [aligned_steps(ref, r) for r in self.results] if ref is not None else []
        self.frames = [Frames(r) for r in self.results]

    def __len__(self) -> int:
        """Positions on the shared scrubber: the longest run's steps."""
        return len(self.results[self.reference]) if self.results else 0

    def step(self, run: int, position: int) -> int:
        """The step of run `run` shown at shared `position`."""
        steps = self.maps[run]
        return int(steps[min(max(position, 0), len(steps) - 1)]) if len(steps) else 0

    def noise_level(self, position: int) -> float:
        """The reference run's noise level at `position` (NaN when unknown)."""
        track = self.results[self.reference].track(NOISE) if self.results else ()
        return float(track[position]) if 0 <= position < len(track) and track[position] is not None else float("nan")

    def elapsed(self) -> np.ndarray | None:
        """The reference run's per-step times (for real-time replay)."""
        return self.frames[self.reference].elapsed() if self.results else None

    def picture(self, run: int, position: int, view: str = "xt", size: int = 192) -> np.ndarray:
        """Run `run` at shared `position` as (H, W, 3) uint8: its image grid (x_t or x̂0), or for a 2-D
        run its points as a `size`-pixel scatter. x̂0 before the first update is blank."""
        result = self.results[run]
        if len(result) == 0:  # a run saved without its steps: its final samples
            from ..library.pngio import result_picture

            return result_picture(result, size)
        frame = self.frames[run].frame(self.step(run, position))
        shown = frame.xt if view == "xt" else frame.x0
        if result.is_points:
            if shown is None:
                return np.full((size, size, 3), 255, np.uint8)
            return points_picture(shown, result.request, size=size)
        if shown is None:
            return np.zeros_like(frame.xt)
        return shown
