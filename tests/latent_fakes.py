"""A stand-in latent model for tests that need no diffusers: 4-channel latents at half the image size, a
"VAE" that decodes them exactly (tanh of three channels, upsampled ×2) and a linear preview."""
from __future__ import annotations

import torch
from torch import nn

from core import ModelBundle, ModelConfig


class ShrinkTowardZero(nn.Module):
    """ε(x, t, y) = 0.5·x: a deterministic toy denoiser."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, y=None):
        return self.weight * x


class FakeLatentBundle(ModelBundle):
    """`decode` counts its calls and may advance a fake clock by `decode_seconds` (cost tests)."""

    decode_calls = 0
    clock = None
    decode_seconds = 0.0

    @property
    def is_latent(self) -> bool:
        return True

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        self.decode_calls += 1
        if self.clock is not None:
            self.clock.now += self.decode_seconds
        return torch.tanh(x[:, :3]).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)

    def preview(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * x[:, :3]).clamp(-1, 1)


def latent_bundle(name: str = "latent-toy", side: int = 4) -> FakeLatentBundle:
    config = ModelConfig(architecture="test-identity", data_shape=(4, side, side), clip="none")
    return FakeLatentBundle(name, config, ShrinkTowardZero())
