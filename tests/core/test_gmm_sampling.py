"""Sampling the analytic mixture (exact scores, exact classifier) against what the math predicts.

toy-gmm: 8 equal-weight Gaussians, std 0.1, means on the unit circle at angles 2πk/8.
"""
import math

import pytest
import torch

from core import Guidance, SamplingRequest, final_sample
from core.schedule import Schedule

from .conftest import nearest_component

N = 4000  # share of a component: 1/8 ± 0.005 (1σ), tolerances are ≥ 4σ


def _per_component(bundle, x):
    k = nearest_component(bundle, x)
    shares = torch.bincount(k, minlength=8).double() / len(x)
    means = torch.stack([x[k == j].mean(0) for j in range(8)])
    stds = torch.stack([x[k == j].std(0) for j in range(8)])
    return shares, means, stds


def test_unguided_ddpm_1000_steps_reproduces_the_mixture(gmm):
    x = final_sample(SamplingRequest("toy-gmm", sampler="ddpm", steps=1000, batch=N, seed=1), gmm).x
    shares, means, stds = _per_component(gmm, x)
    assert (shares - 1 / 8).abs().max() < 0.025
    assert (means.float() - gmm.model.means).abs().max() < 0.015
    assert stds.min() > 0.09 and stds.max() < 0.11


def _ddim_final_step_std(std: float, steps: str) -> float:
    """DDIM's last update returns x̂0 = E[x0 | x_t] at the last noisy timestep t₁; for a Gaussian
    component that posterior mean has std  s·√(s²ᾱ/(s²ᾱ + 1 − ᾱ)), ᾱ = ᾱ_{t₁}: a known contraction."""
    s = Schedule.from_name("linear", 1000).respace(steps)
    abar = s.alphas_cumprod[1]
    return std * math.sqrt(std**2 * abar / (std**2 * abar + 1 - abar))


def test_unguided_ddim_50_steps_reproduces_the_mixture(gmm):
    x = final_sample(SamplingRequest("toy-gmm", sampler="ddim", steps=50, eta=0.0, batch=N, seed=1), gmm).x
    shares, means, stds = _per_component(gmm, x)
    assert (shares - 1 / 8).abs().max() < 0.025
    assert (means.float() - gmm.model.means).abs().max() < 0.02
    # 50 deterministic steps shrink the radial and stretch the tangential spread a little.
    assert stds.min() > 0.075 and stds.max() < 0.115


def test_ddim_50_steps_contracts_a_component_as_predicted(gmm):
    req = SamplingRequest("toy-gmm", steps=50, batch=N, seed=6, guidance=Guidance("cfg", weight=0.0), label=4)
    x = final_sample(req, gmm).x
    expected = _ddim_final_step_std(0.1, "50")  # ≈ 0.078, not 0.1: see the helper
    assert expected == pytest.approx(0.078, abs=1e-3)
    assert x.std(0) == pytest.approx([expected, expected], abs=0.004)


def test_ddim_with_all_steps_recovers_the_component_std(gmm):
    req = SamplingRequest("toy-gmm", steps=1000, batch=1000, seed=2, guidance=Guidance("cfg", weight=0.0), label=5)
    x = final_sample(req, gmm).x
    assert x.std(0) == pytest.approx([0.1, 0.1], abs=0.008)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_classifier_guidance_at_scale_1_lands_in_the_target_component(gmm, sampler):
    steps = 250 if sampler == "ddpm" else 50
    for k in (0, 3, 6):
        req = SamplingRequest("toy-gmm", sampler=sampler, steps=steps, batch=1000, seed=k, label=k,
                              guidance=Guidance("classifier", scale=1.0))
        share = (nearest_component(gmm, final_sample(req, gmm).x) == k).double().mean()
        assert share >= 0.95


def test_cfg_weight_0_samples_the_class_conditional(gmm):
    k = 2
    req = SamplingRequest("toy-gmm", sampler="ddpm", steps=1000, batch=2000, seed=3, label=k,
                          guidance=Guidance("cfg", weight=0.0))
    x = final_sample(req, gmm).x
    assert (nearest_component(gmm, x) == k).all()
    assert x.mean(0) == pytest.approx(gmm.model.means[k].tolist(), abs=0.01)
    assert x.std(0) == pytest.approx([0.1, 0.1], abs=0.01)


def test_ddim_classifier_guidance_at_1_equals_cfg_at_0_with_exact_model(gmm):
    """∇log p(x_t|y) = ∇log p(x_t) + ∇log p(y|x_t): the two guided ε are the same function."""
    base = SamplingRequest("toy-gmm", steps=50, batch=500, seed=4, label=1)
    a = final_sample(base.replace(guidance=Guidance("classifier", scale=1.0)), gmm).x
    b = final_sample(base.replace(guidance=Guidance("cfg", weight=0.0)), gmm).x
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_stronger_cfg_concentrates_samples(gmm):
    k = 2  # mode at angle π/2, i.e. (0, 1)
    mode = gmm.model.means[k]
    confidence, spread, distance = [], [], []
    for w in (0.0, 1.0, 2.0, 4.0):
        req = SamplingRequest("toy-gmm", steps=50, batch=2000, seed=5, label=k, guidance=Guidance("cfg", weight=w))
        x = final_sample(req, gmm).x
        p = gmm.classifier.mixture.log_posterior(x * 0.7, torch.full((len(x),), 300)).exp()[:, k]
        confidence.append(p.mean().item())
        spread.append((torch.atan2(x[:, 1], x[:, 0]) - math.pi / 2).std().item())
        distance.append((x - mode).norm(dim=1).mean().item())
    assert confidence == sorted(confidence) and confidence[-1] > confidence[0]
    assert spread == sorted(spread, reverse=True) and spread[-1] < 0.5 * spread[0]
    # Samples also move outward, past the mode: the mean distance to it grows (DESIGN.md).
    assert distance[0] == pytest.approx(0.10, abs=0.02) and distance[-1] == pytest.approx(0.23, abs=0.03)
