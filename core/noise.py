"""Reproducible noise: sample i of a batch draws everything from its own CPU generator (seed + i).

So one seed gives the same sample in any batch size and on any device, and two runs that differ
only in guidance share all their noise. Per-step noise is drawn in chunks of steps (a chunk size
that depends only on the sample shape and the step count) to keep Python overhead off the loop.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 20  # per sample and chunk


class NoiseStream:
    """Initial noise x_T, then one standard normal draw per denoising step, for each sample."""

    def __init__(self, seed: int, batch: int, shape: tuple[int, ...], num_steps: int, device: torch.device):
        self.shape = tuple(shape)
        self.device = device
        self._generators = [torch.Generator().manual_seed(seed + i) for i in range(batch)]
        numel = math.prod(self.shape)
        self._chunk = max(1, min(num_steps, _CHUNK_ELEMENTS // numel))
        self._buffer: Tensor | None = None
        self._used = 0

    def _draw(self, shape: tuple[int, ...]) -> Tensor:
        cpu = torch.stack([torch.randn(shape, generator=g) for g in self._generators])
        return cpu.to(self.device, non_blocking=True)

    def initial(self) -> Tensor:
        """x_T ~ N(0, I), shape (B, *shape). Call once, before any `step`."""
        return self._draw(self.shape)

    def step(self) -> Tensor:
        """The next step's z ~ N(0, I), shape (B, *shape)."""
        if self._buffer is None or self._used == self._chunk:
            self._buffer = self._draw((self._chunk, *self.shape))
            self._used = 0
        z = self._buffer[:, self._used]
        self._used += 1
        return z
