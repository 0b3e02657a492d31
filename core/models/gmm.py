"""The analytic 2-D model: a Gaussian mixture whose noisy scores and class posteriors are exact.

With x_0 ~ Σ_k π_k N(μ_k, σ²I) and q(x_t | x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I), each component stays
Gaussian: x_t | k ~ N(√ᾱ_t μ_k, v_t I), v_t = ᾱ_t σ² + 1 − ᾱ_t. Hence, with equal weights,
  p(k | x_t) = softmax_k(−‖x_t − √ᾱ_t μ_k‖² / 2v_t),
  ε(x_t) = −√(1−ᾱ_t) ∇log p(x_t) = √(1−ᾱ_t)/v_t · Σ_k r_k (x_t − √ᾱ_t μ_k),
with r = p(·|x_t) for the unconditional model and r = one-hot(y) for class y.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..schedule import make_betas


def circle_means(num_components: int, radius: float) -> Tensor:
    """Means on a circle at angles 2πk/K."""
    angles = torch.arange(num_components, dtype=torch.float64) * (2 * math.pi / num_components)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


class GaussianMixture(nn.Module):
    """Exact ε(x_t, t, y) of an equal-weight isotropic mixture; y = K (null label) or None: unconditional."""

    def __init__(self, num_components: int = 8, radius: float = 1.0, std: float = 0.1,
                 schedule: str = "linear", num_timesteps: int = 1000):
        super().__init__()
        self.num_components = num_components
        self.std = std
        alphas_cumprod = torch.from_numpy(make_betas(schedule, num_timesteps)).neg().add(1).cumprod(0)
        self.register_buffer("means", circle_means(num_components, radius).float())
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())

    def _offsets(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t − √ᾱ μ_k) of shape (B, K, D), v_t and ᾱ_t of shape (B, 1)."""
        abar = self.alphas_cumprod[t].to(x.dtype)[:, None]
        offsets = x[:, None, :] - abar.sqrt()[:, :, None] * self.means[None].to(x.dtype)
        var = abar * self.std**2 + 1 - abar
        return offsets, var, abar

    def log_posterior(self, x: Tensor, t: Tensor) -> Tensor:
        """log p(k | x_t), shape (B, K)."""
        offsets, var, _ = self._offsets(x, t)
        return (-offsets.square().sum(-1) / (2 * var)).log_softmax(dim=-1)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        offsets, var, abar = self._offsets(x, t)
        resp = (-offsets.square().sum(-1) / (2 * var)).softmax(dim=-1)
        if y is not None:
            conditional = y < self.num_components
            one_hot = nn.functional.one_hot(y.clamp(max=self.num_components - 1), self.num_components)
            resp = torch.where(conditional[:, None], one_hot.to(resp.dtype), resp)
        return (1 - abar).sqrt() / var * (resp[:, :, None] * offsets).sum(1)


class GaussianMixtureClassifier(nn.Module):
    """The exact noisy classifier p(y | x_t, t) of a `GaussianMixture` (its logits are log posteriors)."""

    def __init__(self, **mixture_kwargs):
        super().__init__()
        self.mixture = GaussianMixture(**mixture_kwargs)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mixture.log_posterior(x, t)
