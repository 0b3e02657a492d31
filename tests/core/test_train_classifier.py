"""The classifier training loop (noise-aware and clean) on tiny data, and its pieces."""
from __future__ import annotations

import pytest
import torch

from core.models import build_network
from core.schedule import Schedule
from core.training.classifier import (
    ClassifierSettings,
    accuracy,
    accuracy_by_t,
    learning_rate,
    random_shift,
    train_classifier,
)

ABAR = torch.tensor(Schedule.from_name("linear", 1000).alphas_cumprod, dtype=torch.float32)


def dark_and_bright(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: images at −0.8, class 1: images at +0.8 (16×16, one channel)."""
    labels = torch.arange(n) % 2
    return (labels.float() * 1.6 - 0.8).view(n, 1, 1, 1).expand(n, 1, 16, 16).clone(), labels


def test_random_shift_moves_each_image_by_at_most_the_limit():
    x = torch.full((50, 1, 9, 9), -1.0)
    x[:, 0, 4, 4] = 1.0
    moved = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape
    where = (moved[:, 0] == 1.0).nonzero()[:, 1:]
    assert len(where) == 50  # the bright pixel survives in every image …
    offsets = where - 4
    assert offsets.abs().max() <= 2 and len({tuple(o) for o in offsets.tolist()}) > 10  # … at many offsets
    assert random_shift(x, 0, torch.Generator()) is x


def test_learning_rate_warms_up_then_decays_to_five_percent():
    assert learning_rate(0, 1000, 1.0) == pytest.approx(1 / 101)
    assert learning_rate(100, 1000, 1.0) == pytest.approx(1.0)
    assert learning_rate(999, 1000, 1.0) == pytest.approx(0.05, abs=1e-4)
    values = [learning_rate(s, 1000, 1.0) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_clean_training_learns_a_trivial_task():
    x, y = dark_and_bright()
    model = build_network("judge", {"num_classes": 2, "width": 8})
    settings = ClassifierSettings(steps=25, batch_size=16, lr=3e-3, noise=False, shift=1, log_every=100)
    lines = []
    train_classifier(model, x, y, settings, log=lines.append)
    assert accuracy(model, x, y) == 1.0
    assert len(lines) == 1 and lines[0].startswith("step 25/25")
    assert accuracy_by_t(model, x, y, None) == [(0, 0, 1.0)]


def test_noise_aware_training_reports_accuracy_by_t_range():
    x, y = dark_and_bright(64)
    model = build_network("conv-classifier", {"num_classes": 2, "width": 8})
    settings = ClassifierSettings(steps=40, batch_size=32, lr=3e-3, noise=True, log_every=100)
    train_classifier(model, x, y, settings, ABAR, log=lambda line: None)
    rows = accuracy_by_t(model, x, y, ABAR, bins=4)
    assert [(lo, hi) for lo, hi, _ in rows] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert rows[0][2] == 1.0  # lightly noised: trivially separable
    last = accuracy_by_t(model, x, y, ABAR, bins=10)[-1]
    # At t ≥ 900, √ᾱ < 0.02: even the best possible classifier is barely above chance on 64 images.
    assert last[:2] == (900, 1000) and last[2] < 0.8


def test_noise_aware_training_needs_the_schedule():
    x, y = dark_and_bright(4)
    with pytest.raises(ValueError, match="schedule"):
        train_classifier(build_network("conv-classifier", {"num_classes": 2, "width": 8}), x, y,
                         ClassifierSettings(steps=1, noise=True))


@pytest.mark.parametrize("kwargs, message", [({"steps": 0}, "at least one step"), ({"lr": 0}, "positive"),
                                             ({"shift": -1}, "negative")])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassifierSettings(**kwargs)
