"""Training the classifiers: the noise-aware p(y | x_t, t) used for classifier guidance (inputs
noised at t ~ U{0…T−1}, as in guided-diffusion's classifier training) and the clean-image judge used
for evaluation (inputs shifted by up to a few pixels, a cheap augmentation that lifts held-out accuracy).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .diffusion import noised


@dataclass(frozen=True)
class ClassifierSettings:
    """Optimisation settings; `noise` trains on x_t at uniformly random t, `shift` is the largest
    random translation in pixels (0: none)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    noise: bool = True
    shift: int = 0
    log_every: int = 250

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("Training needs at least one step and a positive batch size.")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("The learning rate must be positive and the weight decay non-negative.")
        if self.shift < 0:
            raise ValueError("The random shift cannot be negative.")


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image (B, C, H, W) by its own integer offset in [−max_shift, max_shift]², filling
    with background (−1). Returns a new tensor of the same shape."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 10 % of steps (at most 200), then cosine decay to 5 % of `peak`."""
    warmup = min(200, steps // 10 + 1)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def classify(model: nn.Module, x: Tensor, t: Tensor | None) -> Tensor:
    """Logits of a noise-aware classifier, model(x, t), or of a clean one, model(x), when t is None."""
    return model(x) if t is None else model(x, t)


def train_classifier(model: nn.Module, data: Tensor, labels: Tensor, settings: ClassifierSettings,
                     alphas_cumprod: Tensor | None = None, log: Callable[[str], None] = print) -> nn.Module:
    """Minimise cross-entropy on `data` (N, C, H, W), `labels` (N,); return the model in eval mode.

    With `settings.noise`, `alphas_cumprod` (T,) is required and each image is noised at its own t.
    """
    if settings.noise and alphas_cumprod is None:
        raise ValueError("A noise-aware classifier needs the schedule's ᾱ to noise its inputs.")
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    start, running, correct, seen = time.perf_counter(), 0.0, 0, 0
    for step in range(settings.steps):
        idx = torch.randint(0, len(data), (settings.batch_size,), generator=generator)
        x, y = random_shift(data[idx], settings.shift, generator), labels[idx]
        t = None
        if settings.noise:
            t = torch.randint(0, len(alphas_cumprod), (len(idx),), generator=generator)
            x = noised(x, t, alphas_cumprod, torch.randn(x.shape, generator=generator))
        logits = classify(model, x, t)
        loss = nn.functional.cross_entropy(logits, y)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings.steps, settings.lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            n = (step % settings.log_every) + 1
            log(f"step {step + 1}/{settings.steps}  loss {running / n:.4f}  train acc {correct / seen:.3f}  "
                f"{time.perf_counter() - start:.0f}s")
            running, correct, seen = 0.0, 0, 0
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, labels: Tensor, t: Tensor | None = None, batch: int = 500) -> float:
    """Fraction of `x` (N, C, H, W) classified as `labels` (N,); t (N,) for a noise-aware model."""
    model.eval()
    hits = 0
    for i in range(0, len(x), batch):
        logits = classify(model, x[i:i + batch], None if t is None else t[i:i + batch])
        hits += int((logits.argmax(1) == labels[i:i + batch]).sum())
    return hits / len(x)


def accuracy_by_t(model: nn.Module, x: Tensor, labels: Tensor, alphas_cumprod: Tensor | None,
                  bins: int = 5, seed: int = 0) -> list[tuple[int, int, float]]:
    """[(t_lo, t_hi, accuracy)] with every image noised at a random t in each range; one row
    (0, 0, clean accuracy) for a clean classifier (`alphas_cumprod` None)."""
    if alphas_cumprod is None:
        return [(0, 0, accuracy(model, x, labels))]
    generator = torch.Generator().manual_seed(seed)
    steps = len(alphas_cumprod)
    edges = [round(steps * k / bins) for k in range(bins + 1)]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        t = torch.randint(lo, hi, (len(x),), generator=generator)
        xt = noised(x, t, alphas_cumprod, torch.randn(x.shape, generator=generator))
        rows.append((lo, hi, accuracy(model, xt, labels, t)))
    return rows
