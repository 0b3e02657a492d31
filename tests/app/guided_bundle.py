"""A tiny image model with a null label and a classifier, for tests of the guidance views (no randomness
beyond a fixed seed, milliseconds per step)."""
from __future__ import annotations

import torch
from torch import nn

from core import ModelBundle, ModelConfig


class LabelPattern(nn.Module):
    """ε(x, t, y) = 0.5·x + a fixed random pattern per label (the null label 3 has its own)."""

    def __init__(self, shape=(1, 8, 8)):
        super().__init__()
        self.patterns = nn.Parameter(torch.randn(4, *shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x, t, y):
        return 0.5 * x + 0.3 * self.patterns[y]


class MeanClassifier(nn.Module):
    """Three classes from the image mean: logits 4·(m, −m, 0)."""

    def forward(self, x, t):
        m = x.flatten(1).mean(1)
        return torch.stack([m, -m, torch.zeros_like(m)], 1) * 4


def guided_image_bundle(shape=(1, 8, 8), name: str = "guided") -> ModelBundle:
    """Images of `shape`, 3 named classes, a null label (CFG) and a classifier (classifier guidance)."""
    config = ModelConfig("test-pattern", shape, num_classes=3, class_names=("bright", "dark", "grey"),
                         null_label=True)
    return ModelBundle(name, config, LabelPattern(shape), MeanClassifier())
