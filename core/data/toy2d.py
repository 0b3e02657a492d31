"""2-D toy data: samples of the 8-Gaussian mixture (as `toy-gmm` defines it) and a labelled S-curve."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.gmm import circle_means


def gmm_dataset(num: int = 50_000, seed: int = 0, num_components: int = 8, radius: float = 1.0,
                std: float = 0.1) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Equal-weight isotropic Gaussians on a circle; label = component."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_components, (num,), generator=g)
    means = circle_means(num_components, radius).float()
    x = means[labels] + std * torch.randn(num, 2, generator=g)
    return x, labels, tuple(f"component {k}" for k in range(num_components))


SCURVE_CLASSES = ("upper arc", "upper middle", "lower middle", "lower arc")


def scurve_dataset(num: int = 50_000, seed: int = 0, noise: float = 0.03) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """A 2-D S: θ ~ U(−3π/2, 3π/2), point 0.6·(sin θ, sign(θ)(cos θ − 1)) plus Gaussian noise.

    Label = which quarter of the curve (by θ) a point comes from, top (0) to bottom (3).
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(num, generator=g)
    theta = 3 * math.pi * (u - 0.5)
    x = torch.stack([theta.sin(), theta.sign() * (theta.cos() - 1)], dim=1) * 0.6
    x = x + noise * torch.randn(num, 2, generator=g)
    labels = (u * 4).long().clamp(max=3)
    return x, labels, SCURVE_CLASSES
