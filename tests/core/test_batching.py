"""A step's passes: one forward of 2B, one forward each, or slices side by side on the CPU's cores, whichever
was measured to be fastest for the model."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, guidance as G, sample
from core.guidance import batching_choice
from tests.core.test_unet import randomize, small_classifier, small_unet


@pytest.fixture
def threads():
    """Set torch's CPU threads for one test (the choices depend on them) and put them back."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


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


def test_a_model_whose_double_batch_costs_more_runs_its_passes_apart(threads):
    threads(1)  # one thread: nothing to spread over cores
    model = Costed(0.0, 0.001)  # a forward of 8 costs 64 ms, two of 4 cost 32 ms
    bundle = bundle_of(model)
    steps = cfg_run(bundle)
    # Step 1 measured: joint, split (warm-up), then three rounds of both; every later step: two forwards of 4.
    assert model.batches == [8, 4, 4] + [8, 4, 4] * 3 + [4, 4] * 3
    assert batching_choice(bundle) == {("cpu", "fp32", (4, 4), (2,), 1, False): "split"}
    joint = cfg_run(bundle_of(Costed(0.0, 0.0)))  # the same model, quick: one forward every step
    for a, b in zip(steps, joint):
        torch.testing.assert_close(a.x, b.x)


def test_a_model_that_costs_per_call_keeps_one_forward_and_quick_or_analytic_ones_are_not_measured(threads):
    threads(1)
    slow = Costed(0.01, 0.0)
    cfg_run(bundle_of(slow))
    assert slow.batches == [8, 4, 4] + [8, 4, 4] * 3 + [8] * 3
    quick = Costed(0.0, 0.0)
    bundle = bundle_of(quick)
    cfg_run(bundle)
    assert quick.batches == [8] * 4 and batching_choice(bundle) == {("cpu", "fp32", (4, 4), (2,), 1, False): "joint"}
    analytic = Costed(0.01, 0.0)
    del analytic.weight
    analytic.weight = 0.5
    cfg_run(bundle_of(analytic))
    assert analytic.batches == [8] * 4


def test_on_two_cpu_threads_slices_run_side_by_side_on_single_threaded_workers(threads):
    threads(2)
    model = Costed(0.0, 0.001)  # sleeps: two slices of 4 side by side cost what one of them costs
    bundle = bundle_of(model)
    steps = cfg_run(bundle)
    # Step 1 measured joint, split and cores (warm-ups, three rounds); every later step: two slices of 4.
    assert model.batches == [8, 4, 4, 4, 4] + [8, 4, 4, 4, 4] * 3 + [4, 4] * 3
    assert batching_choice(bundle) == {("cpu", "fp32", (4, 4), (2,), 2, False): "cores"}
    for a, b in zip(steps, cfg_run(bundle_of(Costed(0.0, 0.0)))):
        torch.testing.assert_close(a.x, b.x)
    assert torch.get_num_threads() == 2  # the workers' single thread did not become the caller's


def test_workers_run_one_torch_thread_each_in_the_callers_grad_mode_and_hand_back_errors(threads):
    threads(2)
    workers = G._cpu_workers(2)
    seen = workers.map([lambda: (torch.get_num_threads(), torch.is_inference_mode_enabled(),
                                 threading.get_ident())] * 2)
    assert [s[:2] for s in seen] == [(1, False), (1, False)] and seen[0][2] != seen[1][2]
    with torch.inference_mode():
        assert workers.map([torch.is_inference_mode_enabled]) == [True]
    assert torch.get_num_threads() == 2
    with pytest.raises(ZeroDivisionError):
        workers.map([lambda: 1 / 0, lambda: 2])
    assert workers.map([lambda: "still serving"]) == ["still serving"]


def test_batches_are_spread_only_over_several_cpu_threads(threads):
    on = lambda kind: SimpleNamespace(device=torch.device(kind))  # noqa: E731
    threads(2)
    assert G._spreadable(on("cpu"), 4) and not G._spreadable(on("cpu"), 1)
    assert not G._spreadable(on("cuda"), 4) and not G._spreadable(on("mps"), 4)
    threads(1)
    assert not G._spreadable(on("cpu"), 4)
    assert G._slices(5, 2) == [(0, 2), (2, 5)] and G._slices(1, 2) == [(0, 1)]


def test_slices_on_cores_give_the_joint_forward_and_the_classifier_gradient(threads):
    threads(2)
    config = ModelConfig("unet", (3, 16, 16), dict(image_size=16, in_channels=3, model_channels=32,
                         out_channels=6, num_res_blocks=1, attention_resolutions=[2], channel_mult=[1, 2],
                         num_heads=2, num_classes=4), num_classes=3, null_label=True, learn_sigma=True)
    model = randomize(small_unet(out_channels=6, num_classes=4))
    classifier = randomize(small_classifier(out_channels=3))
    bundle = ModelBundle("tiny", config, model, classifier)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t, y, null = torch.tensor([10, 500, 900]), torch.tensor([0, 1, 2]), torch.full((3,), 3)
    with torch.inference_mode():
        joint = G._joint_outputs(bundle, t, [(x, y), (x, null)])
        cores = G._cores_outputs(bundle, t, [(x, y), (x, null)])
        for (eps_a, v_a), (eps_b, v_b) in zip(joint, cores):
            torch.testing.assert_close(eps_a, eps_b, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(v_a, v_b, rtol=1e-5, atol=1e-5)
        for with_grad in (True, False):
            lp_a, grad_a = G._classify(bundle, x, t, y, with_grad)
            lp_b, grad_b = G._classify_on_cores(bundle, x, t, y, with_grad)
            torch.testing.assert_close(lp_a, lp_b, rtol=1e-5, atol=1e-5)
            if with_grad:
                assert grad_a.abs().max() > 0
                torch.testing.assert_close(grad_a, grad_b, rtol=1e-5, atol=1e-6)
            else:
                assert grad_a is None and grad_b is None
