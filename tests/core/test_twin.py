"""The unguided twin (`sample(..., twin=True)`) and `update_terms`: exact against the runs they stand for."""
import math

import pytest
import torch
from torch import nn

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, sample
from core.models import build_network
from core.samplers import update_terms

GUIDANCES = [
    Guidance("classifier", scale=2.0),
    Guidance("cfg", weight=3.0),
    Guidance("both", scale=1.0, weight=2.0),
    Guidance("cfg", weight=3.0, window=(0.3, 0.8)),
]


def _exact(a, b):
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("guidance", GUIDANCES, ids=lambda g: f"{g.kind}-{g.window}")
@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 0.7), ("ddpm", 0.0)])
def test_twin_is_exactly_the_unguided_run_with_the_same_seed(gmm, guidance, sampler, eta):
    req = SamplingRequest("toy-gmm", sampler=sampler, eta=eta, steps=20, batch=16, seed=5, label=3,
                          guidance=guidance)
    with_twin = list(sample(req, gmm, twin=True))
    alone = list(sample(req, gmm))
    unguided = list(sample(req.unguided(), gmm))
    assert len(with_twin) == len(unguided) == 21
    for a, b, u in zip(with_twin, alone, unguided):
        _exact(a.x, b.x)  # the twin leaves the guided run untouched
        _exact(a.twin_x, u.x)
        if a.index:
            _exact(a.twin_x0, u.x0)
    assert (with_twin[-1].x - with_twin[-1].twin_x).norm() > 0.1  # guidance did change something
    assert all(s.twin_x is None and s.twin_x0 is None for s in alone)


def test_unguided_means_guidance_off_for_the_same_conditioning():
    base = SamplingRequest("toy-gmm", label=2)
    assert base.replace(guidance=Guidance("cfg", weight=3.0)).unguided().guidance == Guidance("cfg", weight=0.0)
    assert base.replace(guidance=Guidance("both", scale=1, weight=3)).unguided().guidance == Guidance("cfg")
    assert base.replace(guidance=Guidance("classifier", scale=2)).unguided().guidance == Guidance("none")
    assert base.unguided() == base


class _BatchRecorder(nn.Module):
    """Wraps a network and records the batch size of every forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.batches = inner, []

    def forward(self, x, t, y=None):
        self.batches.append(len(x))
        return self.inner(x, t, y)


@pytest.mark.parametrize("guidance, guided_batch", [(Guidance("cfg", weight=2.0, window=(0.5, 1.0)), 2),
                                                    (Guidance("classifier", scale=2.0, window=(0.5, 1.0)), 1)])
def test_twin_costs_nothing_until_guidance_acts_then_one_pass_in_the_same_forward(gmm, guidance, guided_batch):
    model = _BatchRecorder(gmm.model)
    bundle = ModelBundle("rec", gmm.config, model, gmm.classifier, gmm.classifier_config)
    req = SamplingRequest("rec", steps=10, batch=4, label=1, guidance=guidance)
    steps = list(sample(req, bundle, twin=True))
    # Steps 1-5: outside the window CFG is the plain conditional model: the twin is this very run.
    assert model.batches[:5] == [4] * 5
    assert all(s.twin_x is s.x for s in steps[:6])
    # From the first guided update on: the guided passes plus the twin's, in one forward.
    assert model.batches[5:] == [4 * (guided_batch + 1)] * 5
    assert all(s.twin_x is not s.x for s in steps[6:])


def test_twin_of_a_unet_with_cfg_is_exactly_the_unguided_run():
    network = dict(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                   attention_resolutions=[2], channel_mult=[1, 2], num_classes=4, num_head_channels=32)
    torch.manual_seed(0)
    bundle = ModelBundle("unet", ModelConfig("unet", (1, 8, 8), network=network, num_classes=3, null_label=True),
                         build_network("unet", network).eval())
    req = SamplingRequest("unet", sampler="ddpm", steps=8, batch=3, seed=2, label=1,
                          guidance=Guidance("cfg", weight=4.0))
    twin = [s.twin_x for s in sample(req, bundle, twin=True)]
    unguided = [s.x for s in sample(req.unguided(), bundle)]
    for a, b in zip(twin, unguided):
        _exact(a, b)


@pytest.mark.parametrize("guidance", GUIDANCES[:3], ids=lambda g: g.kind)
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_update_terms_at_the_samples_are_the_steps_own_terms(gmm, guidance, sampler):
    req = SamplingRequest("toy-gmm", sampler=sampler, steps=12, batch=7, seed=1, label=5, guidance=guidance)
    steps = list(sample(req, gmm))
    for k in (1, 6, 12):
        terms = update_terms(req, gmm, steps[k - 1].x, k)
        for name in ("cfg_term", "classifier_term"):
            got, want = getattr(terms, name), getattr(steps[k], name)
            assert (got is None) == (want is None)
            if want is not None:
                _exact(got, want)


def test_update_terms_give_the_analytic_scores_of_the_mixture(gmm):
    """−ε/√(1−ᾱ_t) is ∇log p_t: of the whole mixture without CFG, of component y's Gaussian with it."""
    grid = torch.stack(torch.meshgrid(torch.linspace(-2, 2, 9), torch.linspace(-2, 2, 9), indexing="xy"), -1)
    points = grid.reshape(-1, 2)
    mixture = gmm.model
    for guidance, k in ((Guidance("none"), 5), (Guidance("cfg", weight=2.0), 15)):
        req = SamplingRequest("toy-gmm", steps=20, label=4, guidance=guidance)
        terms = update_terms(req, gmm, points, k)
        timestep = gmm.sampling_schedule("20").coefficients(20 - k).timestep
        abar = float(mixture.alphas_cumprod[timestep])
        offsets = points[:, None, :] - math.sqrt(abar) * mixture.means[None]  # (N, K, 2)
        var = abar * mixture.std**2 + 1 - abar
        if guidance.kind == "none":
            resp = (-offsets.square().sum(-1) / (2 * var)).softmax(-1)
        else:
            resp = nn.functional.one_hot(torch.full((len(points),), 4), 8).float()
        score = -(resp[:, :, None] * offsets).sum(1) / var
        torch.testing.assert_close(-terms.eps / math.sqrt(1 - abar), score, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        update_terms(req, gmm, points, 21)
