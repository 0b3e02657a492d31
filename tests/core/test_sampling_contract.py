"""The step iterator's contract: steps, seeds, cancellation, diagnostics, timesteps, errors."""
import math
import threading

import pytest
import torch
from torch import nn

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, final_sample, sample
from core.noise import NoiseStream
from core.samplers import ddim_step, ddpm_step, threshold_x0
from core.schedule import Schedule


def test_sample_yields_initial_noise_then_one_step_per_update(gmm):
    steps = list(sample(SamplingRequest("toy-gmm", steps="ddim10", batch=3, label=1,
                                        guidance=Guidance("cfg", weight=1.0)), gmm))
    assert [s.index for s in steps] == list(range(11))
    assert steps[0].x0 is None and steps[0].timestep is None
    assert [s.timestep for s in steps[1:]] == list(range(900, -1, -100))
    assert steps[-1].is_last and not steps[-2].is_last
    assert all(s.x.shape == (3, 2) and s.x0.shape == (3, 2) for s in steps[1:])
    assert all(s.seconds >= 0 for s in steps)
    assert steps[1].noise_level == pytest.approx(math.sqrt(1 - Schedule.from_name("linear", 1000).alphas_cumprod[900]))


def test_same_seed_gives_the_same_sample_in_any_batch_size(gmm):
    req = SamplingRequest("toy-gmm", sampler="ddpm", steps=100, seed=10, batch=5)
    big = final_sample(req, gmm).x
    single = final_sample(req.replace(seed=12, batch=1), gmm).x
    torch.testing.assert_close(single[0], big[2], atol=1e-6, rtol=0)


def test_noise_stream_is_per_sample():
    a = NoiseStream(seed=3, batch=4, shape=(2,), num_steps=30, device=torch.device("cpu"))
    b = NoiseStream(seed=5, batch=1, shape=(2,), num_steps=30, device=torch.device("cpu"))
    torch.testing.assert_close(a.initial()[2], b.initial()[0], atol=0, rtol=0)
    for _ in range(30):
        torch.testing.assert_close(a.step()[2], b.step()[0], atol=0, rtol=0)


def test_runs_differing_only_in_guidance_share_their_noise(gmm):
    base = SamplingRequest("toy-gmm", sampler="ddpm", steps=50, seed=7, batch=8, label=0)
    a = list(sample(base.replace(guidance=Guidance("cfg", weight=3.0)), gmm))
    b = list(sample(base.replace(guidance=Guidance("none")), gmm))
    torch.testing.assert_close(a[0].x, b[0].x, atol=0, rtol=0)
    # With a weight of 0 CFG is the conditional model: same noise → same trajectory as classifier s=0.
    c = final_sample(base.replace(guidance=Guidance("cfg", weight=0.0)), gmm).x
    d = final_sample(base.replace(guidance=Guidance("both", weight=0.0, scale=0.0)), gmm).x
    torch.testing.assert_close(c, d, atol=0, rtol=0)


def test_cancel_stops_within_one_step_and_closing_is_safe(gmm):
    cancel = threading.Event()
    seen = []
    for step in sample(SamplingRequest("toy-gmm", steps=50, batch=4), gmm, cancel):
        seen.append(step.index)
        if step.index == 3:
            cancel.set()
    assert seen == [0, 1, 2, 3]
    gen = sample(SamplingRequest("toy-gmm", steps=50, batch=4, label=1,
                                 guidance=Guidance("classifier", scale=2.0)), gmm)
    next(gen), next(gen)
    gen.close()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()  # no mode leaks into the caller


def test_diagnostics_are_reported_as_the_math_says(gmm):
    w = 2.0
    req = SamplingRequest("toy-gmm", steps=20, batch=6, seed=1, label=3, guidance=Guidance("cfg", weight=w))
    steps = list(sample(req, gmm))
    prev, step = steps[4], steps[5]
    t = torch.full((6,), step.timestep)
    expected = w * (gmm.model(prev.x, t, torch.full((6,), 3)) - gmm.model(prev.x, t, None))
    torch.testing.assert_close(step.guidance_norm, expected.norm(dim=1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(step.cfg_term, expected, rtol=1e-4, atol=1e-6)
    assert step.classifier_term is None
    # CFG alone: the classifier's p(y|x_t) costs a pass of its own, so only when asked for.
    assert step.log_prob is None and step.log_probs is None
    asked = list(sample(req, gmm, diagnostics=lambda k: k % 5 == 0))
    assert [s.index for s in asked if s.log_prob is not None] == [5, 10, 15, 20]
    torch.testing.assert_close(asked[5].x, step.x)  # asking changes nothing else
    torch.testing.assert_close(asked[5].log_prob, gmm.classifier(prev.x, t)[:, 3], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(asked[5].log_probs, gmm.classifier(prev.x, t), rtol=1e-4, atol=1e-6)
    assert asked[-1].log_prob.exp().min() > 0.99  # guided into class 3
    # Unguided with a classifier present: log p(y|x_t) reported when asked for, guidance norm not.
    plain = list(sample(req.replace(guidance=Guidance("none")), gmm, diagnostics=True))
    assert plain[3].log_prob is not None and plain[3].guidance_norm is None


def test_classifier_term_is_the_shift_the_update_used(gmm):
    s = 1.5
    req = SamplingRequest("toy-gmm", steps=20, batch=5, seed=3, label=2, guidance=Guidance("classifier", scale=s))
    steps = list(sample(req, gmm))  # classifier guidance reports log p for free, without being asked
    prev, step = steps[6], steps[7]
    assert step.log_prob is not None and step.cfg_term is None
    t = torch.full((5,), step.timestep)
    x_in = prev.x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gmm.classifier(x_in, t)[:, 2].sum(), x_in)
    expected = -math.sqrt(1 - gmm.schedule.alphas_cumprod[step.timestep]) * s * grad
    torch.testing.assert_close(step.classifier_term, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(step.guidance_norm, expected.norm(dim=1), rtol=1e-4, atol=1e-6)


def test_guidance_window_limits_where_guidance_acts(gmm):
    base = SamplingRequest("toy-gmm", steps=20, batch=50, seed=2, label=6)
    windowed = list(sample(base.replace(guidance=Guidance("cfg", weight=4.0, window=(0.0, 0.5))), gmm))
    norms = torch.stack([s.guidance_norm for s in windowed[1:]])
    assert (norms[:10] > 0).all() and (norms[10:] == 0).all()
    full = final_sample(base.replace(guidance=Guidance("cfg", weight=4.0)), gmm).x
    plain = final_sample(base.replace(guidance=Guidance("cfg", weight=0.0)), gmm).x
    assert not torch.allclose(windowed[-1].x, full) and not torch.allclose(windowed[-1].x, plain)


class _Recorder(nn.Module):
    """Wraps a network and records the timesteps it is called with."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x, t, *rest):
        self.seen.append(sorted(set(t.tolist())))
        return self.inner(x, t, *rest)


def test_network_and_classifier_receive_original_timesteps(gmm):
    model, classifier = _Recorder(gmm.model), _Recorder(gmm.classifier)
    bundle = ModelBundle("rec", gmm.config, model, classifier, gmm.classifier_config)
    req = SamplingRequest("rec", sampler="ddpm", steps="2,3", batch=2, label=0,
                          guidance=Guidance("classifier", scale=1.0))
    final_sample(req, bundle)
    # "2,3" of 1000 steps: sections [0, 500) → 0, 499 and [500, 1000) → 500, 750, 999.
    assert model.seen == classifier.seen == [[999], [750], [500], [499], [0]]


class _ConstantEps(nn.Module):
    """ε = 0 and a learned-range output v = `v` everywhere (2·C channels)."""

    def __init__(self, v: float):
        super().__init__()
        self.v = v

    def forward(self, x, t, y=None):
        return torch.cat([torch.zeros_like(x), torch.full_like(x, self.v)], dim=1)


def _learned_bundle(v: float) -> ModelBundle:
    config = ModelConfig("none", (1, 2, 2), learn_sigma=True, variance="learned_range", clip="none")
    return ModelBundle("const", config, _ConstantEps(v))


@pytest.mark.parametrize("v, variance", [(1.0, "fixed_large"), (-1.0, "fixed_small")])
def test_learned_range_interpolates_between_the_fixed_variances(v, variance):
    learned = _learned_bundle(v)
    req = SamplingRequest("const", sampler="ddpm", steps=30, batch=3, seed=4)
    a = final_sample(req, learned).x
    b = final_sample(req.replace(variance=variance), learned).x
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_ddpm_and_ddim_steps_match_hand_computation():
    s = Schedule.from_name("linear", 1000).respace("ddim10")
    c = s.coefficients(4)
    x, eps, z = torch.tensor([[0.3, -0.2]]), torch.tensor([[0.5, 0.1]]), torch.tensor([[1.0, -1.0]])
    ab, abp, beta = c.alpha_bar, c.alpha_bar_prev, c.beta
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    mean = math.sqrt(abp) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - abp) / (1 - ab) * x
    var = (1 - abp) / (1 - ab) * beta
    got, got_x0, _ = ddpm_step(x, eps, c, variance="fixed_small", noise=z)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got, mean + math.sqrt(var) * z)
    # Classifier guidance shifts the DDPM mean by Σ·g.
    g = torch.tensor([[2.0, 0.0]])
    shifted, _, _ = ddpm_step(x, eps, c, variance="fixed_small", noise=z, grad=g)
    torch.testing.assert_close(shifted - got, var * g)
    eta = 0.5
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    got, _, _ = ddim_step(x, eps, c, eta=eta, noise=z)
    torch.testing.assert_close(got, math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma**2) * eps + sigma * z)
    # DDIM shifts ε by −√(1−ᾱ)·g and recomputes x̂0 from it.
    _, x0_guided, _ = ddim_step(x, eps, c, grad=g)
    torch.testing.assert_close(x0_guided, (x - math.sqrt(1 - ab) * (eps - math.sqrt(1 - ab) * g)) / math.sqrt(ab))


def test_thresholding():
    x0 = torch.tensor([[0.5, -3.0, 2.0, 0.1], [0.2, 0.3, -0.4, 0.9]])
    torch.testing.assert_close(threshold_x0(x0, "clip"), x0.clamp(-1, 1))
    s = torch.quantile(x0[0].abs(), 0.9)
    out = threshold_x0(x0, "dynamic", 0.9)
    torch.testing.assert_close(out[0], x0[0].clamp(-s, s) / s)
    torch.testing.assert_close(out[1], x0[1])  # percentile below 1: left alone
    assert threshold_x0(x0, "none") is x0


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(sampler="euler"), "Unknown sampler"),
        (dict(eta=1.5), "η must lie"),
        (dict(eta=float("nan")), "finite"),
        (dict(steps="ddim"), "Bad steps"),
        (dict(batch=0), "batch size"),
        (dict(seed=-1), "seed"),
        (dict(clip="sometimes"), "clipping"),
        (dict(label=(1, 2), batch=3), "labels for a batch"),
        (dict(width=500), "multiple of 8"),
        (dict(height=0), "multiple of 8"),
        (dict(width=8192), "multiple of 8"),
        (dict(prompt=3), "prompt must be text"),
    ],
)
def test_bad_requests_are_refused_with_a_readable_message(changes, message):
    with pytest.raises(ValueError, match=message):
        SamplingRequest("toy-gmm", **changes)


@pytest.mark.parametrize(
    "guidance, message",
    [
        (dict(kind="cfg", weight=float("inf")), "finite"),
        (dict(kind="classifier", scale=float("nan")), "finite"),
        (dict(kind="magic"), "Unknown guidance"),
        (dict(window=(0.6, 0.2)), "window"),
    ],
)
def test_bad_guidance_is_refused(guidance, message):
    with pytest.raises(ValueError, match=message):
        Guidance(**guidance)


def test_requests_that_do_not_fit_the_model_are_refused(gmm):
    with pytest.raises(ValueError, match="out of range"):
        next(sample(SamplingRequest("toy-gmm", label=8, guidance=Guidance("cfg", weight=1)), gmm))
    with pytest.raises(ValueError, match="target class"):
        next(sample(SamplingRequest("toy-gmm", guidance=Guidance("classifier", scale=1)), gmm))
    with pytest.raises(ValueError, match="cannot hold"):
        next(sample(SamplingRequest("toy-gmm", steps=2000), gmm))
    with pytest.raises(ValueError, match="does not learn"):
        next(sample(SamplingRequest("toy-gmm", sampler="ddpm", variance="learned_range"), gmm))
    no_classifier = ModelBundle("bare", gmm.config, gmm.model)
    with pytest.raises(ValueError, match="needs a classifier"):
        next(sample(SamplingRequest("bare", label=1, guidance=Guidance("classifier", scale=1)), no_classifier))
    no_null = ModelBundle("plain", ModelConfig("gmm", (2,), num_classes=8, clip="none"), gmm.model)
    with pytest.raises(ValueError, match="null label"):
        next(sample(SamplingRequest("plain", label=1, guidance=Guidance("cfg", weight=1)), no_null))


def test_request_round_trips_through_a_dict():
    req = SamplingRequest("toy-gmm", sampler="ddpm", steps="10,20", eta=0.3, label=(1, 2),
                          batch=2, guidance=Guidance("both", scale=1.5, weight=2.0, window=(0.1, 0.9)),
                          prompt="a red fox", negative_prompt="blurry", width=64, height=48)
    import json

    assert SamplingRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    with pytest.raises(ValueError, match="Unknown sampling settings"):
        SamplingRequest.from_dict({**req.to_dict(), "colour": "red"})


def test_cuda_passes_let_cudnn_pick_its_fastest_algorithms_and_restore_the_setting():
    from types import SimpleNamespace

    from core.guidance import _tuned

    before = torch.backends.cudnn.benchmark
    for kind, expected in (("cuda", True), ("cpu", before)):
        with _tuned(SimpleNamespace(device=torch.device(kind))):
            assert torch.backends.cudnn.benchmark == expected
        assert torch.backends.cudnn.benchmark == before
