"""ε-prediction training (Ho et al.): L = E‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t, y)‖², t uniform.

Labels are replaced by the null label with probability `label_dropout`, so one network learns the
conditional and the unconditional model (Ho & Salimans). Weights are averaged (EMA) for sampling.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..schedule import Schedule


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings shared by the diffusion and classifier loops."""

    steps: int = 10_000
    batch_size: int = 256
    lr: float = 1e-3
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 500

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("Training needs at least one step and a positive batch size.")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError("The label dropout must lie in [0, 1).")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("The EMA decay must lie in [0, 1).")


def noised(x0: Tensor, t: Tensor, alphas_cumprod: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, with ᾱ_t broadcast over the sample dimensions."""
    abar = alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def diffusion_loss(model: nn.Module, x0: Tensor, y: Tensor | None, alphas_cumprod: Tensor,
                   generator: torch.Generator, null_label: int | None, label_dropout: float) -> Tensor:
    """The simple ε-MSE loss of one batch; x0 (B, …), y (B,) or None."""
    b = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (b,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    if y is not None and null_label is not None and label_dropout > 0:
        drop = torch.rand(b, generator=generator) < label_dropout
        y = torch.where(drop, torch.full_like(y, null_label), y)
    eps = model(noised(x0, t, alphas_cumprod, noise), t, y)
    eps = eps[:, : x0.shape[1]]  # a learned-sigma network's extra channels are not trained here
    return nn.functional.mse_loss(eps, noise)


class EMA:
    """Exponential moving average of a module's parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        # Warm-up (as is usual): average over the steps so far until `decay` takes over.
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, cur in zip(self.module.state_dict().values(), module.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, 1 - decay)
            else:
                avg.copy_(cur)


def train_diffusion(model: nn.Module, data: Tensor, labels: Tensor | None, schedule: Schedule,
                    settings: TrainSettings, null_label: int | None = None,
                    log: Callable[[str], None] = print,
                    snapshot: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """Train `model` on `data` (N, …) with optional `labels` (N,); return the EMA copy (eval mode).

    `snapshot(step, ema_module)`, if given, is called at every log line (e.g. to save a checkpoint).
    """
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    alphas_cumprod = torch.tensor(schedule.alphas_cumprod, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    lr_at = lambda step: settings.lr * min(1.0, (step + 1) / 200)  # short linear warm-up
    ema = EMA(model, settings.ema_decay)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(settings.steps):
        idx = torch.randint(0, len(data), (settings.batch_size,), generator=generator)
        y = labels[idx] if labels is not None else None
        loss = diffusion_loss(model, data[idx], y, alphas_cumprod, generator, null_label, settings.label_dropout)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        ema.update(model, step)
        running += loss.item()
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            n = (step % settings.log_every) + 1
            log(f"step {step + 1}/{settings.steps}  loss {running / n:.4f}  {time.perf_counter() - start:.0f}s")
            running = 0.0
            if snapshot is not None:
                snapshot(step + 1, ema.module)
    return ema.module
