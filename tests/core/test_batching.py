"""CFG's passes: one forward of 2B, or one forward each where that was measured to be faster for the model."""
from __future__ import annotations

import time

import torch
from torch import nn

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, sample
from core.guidance import batching_choice


class Costed(nn.Module):
    """ε = 0.5·x, with a wall-time cost of `per_call` + `per_sample2`·batch² seconds per forward."""

    def __init__(self, per_call: float, per_sample2: float):
        super().__init__()
        self.per_call, self.per_sample2, self.batches = per_call, per_sample2, []
        self.weight = nn.Parameter(torch.tensor(0.5))  # a learned network (analytic models are not measured)

    def forward(self, x, t, y=None):
        self.batches.append(len(x))
        time.sleep(self.per_call + self.per_sample2 * len(x) ** 2)
        return self.weight * x + 0.01 * y[:, None].float()


def bundle_of(model: nn.Module) -> ModelBundle:
    config = ModelConfig("test", (2,), num_classes=3, null_label=True, clip="none")
    return ModelBundle("costed", config, model)


def cfg_run(bundle: ModelBundle, steps: int = 4) -> list:
    req = SamplingRequest("costed", steps=steps, batch=4, label=1, guidance=Guidance("cfg", weight=2.0))
    return list(sample(req, bundle))


def test_a_model_whose_double_batch_costs_more_runs_its_passes_apart():
    model = Costed(0.0, 0.001)  # a forward of 8 costs 64 ms, two of 4 cost 32 ms
    bundle = bundle_of(model)
    steps = cfg_run(bundle)
    # Step 1 measured: joint, split (warm-up), then three rounds of both; every later step: two forwards of 4.
    assert model.batches == [8, 4, 4] + [8, 4, 4] * 3 + [4, 4] * 3
    assert batching_choice(bundle) == {("cpu", "fp32", (4, 4), (2,)): False}
    joint = cfg_run(bundle_of(Costed(0.0, 0.0)))  # the same model, quick: one forward every step
    for a, b in zip(steps, joint):
        torch.testing.assert_close(a.x, b.x)


def test_a_model_that_costs_per_call_keeps_one_forward_and_quick_or_analytic_ones_are_not_measured():
    slow = Costed(0.01, 0.0)
    cfg_run(bundle_of(slow))
    assert slow.batches == [8, 4, 4] + [8, 4, 4] * 3 + [8] * 3
    quick = Costed(0.0, 0.0)
    bundle = bundle_of(quick)
    cfg_run(bundle)
    assert quick.batches == [8] * 4 and batching_choice(bundle) == {("cpu", "fp32", (4, 4), (2,)): True}
    analytic = Costed(0.01, 0.0)
    del analytic.weight
    analytic.weight = 0.5
    cfg_run(bundle_of(analytic))
    assert analytic.batches == [8] * 4
