"""The diagnostics budget: p(y | x_t) only for shown frames and within a fraction of the run's time."""
from __future__ import annotations

import pytest
import torch

from core import Guidance, SamplingRequest, sample
from core.diagnostics import DiagnosticsBudget
from core.samplers import Step


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(budget: DiagnosticsBudget, clock: FakeClock, n: int, step_s: float, cost_s: float,
          shown: set[int] | None = None) -> list[int]:
    """Run n synthetic updates of step_s seconds (+ cost_s where diagnostics are asked for), frames
    `shown` (all when None); the k where diagnostics were asked for."""
    x = torch.zeros(1)
    current = [0]
    if shown is not None:
        budget.shown = lambda: current[0] in shown
    budget.observe(Step(0, n, None, x, None, None, None, 1.0, 0.0))
    asked = []
    for k in range(1, n + 1):
        current[0] = k
        paid = budget(k)
        seconds = step_s + (cost_s if paid else 0.0)
        clock.now += seconds
        asked += [k] if paid else []
        budget.observe(Step(k, n, 999 - k, x, x, None, None, 0.5, seconds,
                            diagnostics_seconds=cost_s if paid else 0.0))
    return asked


def test_the_cost_stays_within_the_fraction_and_the_curve_spans_the_run():
    clock = FakeClock()
    budget = DiagnosticsBudget(0.03, clock=clock)
    asked = drive(budget, clock, n=500, step_s=1.0, cost_s=0.25)
    total = clock.now
    assert asked[0] == 1 and asked[-1] == 500  # measured at once, and the curve ends where the run does
    assert budget.spent == pytest.approx(0.25 * len(asked))
    assert budget.spent <= 0.03 * total
    assert len(asked) >= 0.03 * total / 0.25 - 3  # and the budget is used, not hoarded
    strides = {b - a for a, b in zip(asked[1:-2], asked[2:-1])}
    assert strides <= {8, 9}  # evenly spread: a pass every 0.25 / 0.03 ≈ 8.3 s of run


def test_only_shown_frames_get_diagnostics_and_the_last_one_always():
    clock = FakeClock()
    budget = DiagnosticsBudget(0.03, clock=clock)
    asked = drive(budget, clock, n=100, step_s=1.0, cost_s=0.25, shown={30, 31, 90})
    assert asked == [1, 30, 90, 100]  # 31 is shown too, but the budget was spent a step before


def test_a_pass_that_costs_more_than_the_budget_is_made_only_at_both_ends():
    clock = FakeClock()
    budget = DiagnosticsBudget(0.03, clock=clock)
    assert drive(budget, clock, n=20, step_s=0.01, cost_s=1.0) == [1, 20]


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        DiagnosticsBudget(0.0)


def test_sample_reports_the_time_of_paid_diagnostics_only(gmm):
    req = SamplingRequest("toy-gmm", steps=12, batch=3, label=2, guidance=Guidance("cfg", weight=1.0))
    steps = list(sample(req, gmm, diagnostics=lambda k: k in (2, 7)))[1:]
    assert [s.index for s in steps if s.diagnostics_seconds > 0] == [2, 7]
    assert all(0 < s.diagnostics_seconds <= s.seconds for s in steps if s.log_prob is not None)
    # Classifier guidance computes p(y | x_t) anyway: nothing is paid for it, asked or not.
    guided = list(sample(req.replace(guidance=Guidance("classifier", scale=1.0)), gmm, diagnostics=True))[1:]
    assert all(s.log_prob is not None and s.diagnostics_seconds == 0.0 for s in guided)


def test_the_budget_drives_a_real_run(gmm):
    req = SamplingRequest("toy-gmm", steps=40, batch=3, label=2)
    budget = DiagnosticsBudget(0.03)
    steps = []
    for step in sample(req, gmm, diagnostics=budget):
        budget.observe(step)
        steps.append(step)
    paid = [s.index for s in steps if s.log_prob is not None]
    assert paid[0] == 1 and budget.spent == pytest.approx(sum(s.diagnostics_seconds for s in steps))
    exact = list(sample(req, gmm, diagnostics=True))
    for k in paid:
        torch.testing.assert_close(steps[k].log_prob, exact[k].log_prob)
    torch.testing.assert_close(steps[-1].x, exact[-1].x)  # diagnostics never change the samples
