"""The shipped MNIST models: they load, are listed (the judge is not), and sample digits that the
judge recognises. Small sample counts and few steps: the full evaluation lives in the model cards."""
from __future__ import annotations

import pytest
import torch

from core import Guidance, SamplingRequest, final_sample, list_models, load_model
from core.commands.eval import DEFAULT_JUDGE, judge_outputs
from core.data import load_dataset
from core.netfile import load_network
from core.training.classifier import accuracy_by_t
from resources import MODELS

LABELS = tuple(i % 10 for i in range(20))


@pytest.fixture(scope="module")
def bundle():
    return load_model("mnist-cfg", "cpu")


@pytest.fixture(scope="module")
def judge():
    return load_network(DEFAULT_JUDGE, role="judge")[0]


@pytest.fixture(scope="module")
def held_out():
    return load_dataset("mnist:test")


def test_mnist_cfg_is_listed_with_cfg_and_a_classifier():
    info = {i.name: i for i in list_models()}["mnist-cfg"]
    assert info.data_shape == (1, 32, 32) and info.num_classes == 10 and info.class_names == tuple("0123456789")
    assert info.null_label and info.has_classifier
    assert info.path.stat().st_size < 8 * 2 ** 20
    assert not any("judge" in i.name or "classifier" in i.name for i in list_models())
    assert (MODELS / "mnist-cfg.md").is_file() and (MODELS / "mnist-classifier.md").is_file()


def test_judge_is_accurate_on_the_held_out_digits(judge, held_out):
    x, y, _ = held_out
    probs, feats = judge_outputs(judge, x)
    assert (probs.argmax(1) == y).float().mean() >= 0.99
    assert feats.shape == (1000, judge.feature_dim)


def test_bundled_classifier_is_noise_aware(bundle, held_out):
    x, y, _ = held_out
    abar = torch.tensor(bundle.schedule.alphas_cumprod, dtype=torch.float32)
    rows = accuracy_by_t(bundle.classifier, x[:300], y[:300], abar, bins=5)
    assert rows[0][2] >= 0.95  # t < 200: nearly clean
    assert rows[-1][2] < 0.5  # t ≥ 800: mostly noise
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)


def sample(bundle, guidance: Guidance, steps: str = "ddim20") -> torch.Tensor:
    request = SamplingRequest(model="mnist-cfg", sampler="ddim", steps=steps, guidance=guidance, label=LABELS,
                              seed=0, batch=len(LABELS))
    return final_sample(request, bundle, diagnostics=True)


def test_cfg_samples_are_the_requested_digits(bundle, judge):
    last = sample(bundle, Guidance(kind="cfg", weight=2.0))
    assert last.x.shape == (20, 1, 32, 32) and last.x.abs().max() <= 1.0
    probs, _ = judge_outputs(judge, last.x)
    assert (probs.argmax(1) == torch.tensor(LABELS)).float().mean() >= 0.85


def test_classifier_guidance_raises_the_classifier_log_probability(bundle):
    unguided = sample(bundle, Guidance(kind="classifier", scale=0.0), "ddim10")
    guided = sample(bundle, Guidance(kind="classifier", scale=5.0), "ddim10")
    assert guided.log_prob.mean() > unguided.log_prob.mean() + 0.5
    assert guided.guidance_norm.min() > 0 and unguided.guidance_norm.max() == 0
