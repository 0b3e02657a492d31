"""DDPM and DDIM steps and the one step iterator every consumer drains (DESIGN.md, "Math contract").

Each step function is pure: it takes x_t, the network's ε̂ at x_t and the step's scalars, and returns
x_{t−1} and x̂0. `sample` runs the loop and yields one frozen `Step` per denoising step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
from torch import Tensor

from . import guidance as G
from .bundle import ModelBundle
from .noise import NoiseStream
from .requests import SamplingRequest
from .schedule import Schedule, StepCoefficients


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Step:
    """The state after `index` of `num_steps` denoising updates (index 0: the initial noise).

    x: the sample now, (B, …) on the model's device. timestep: the original timestep t the
    network was evaluated at in this update (None at index 0). x0: x̂0 predicted at that x_t.
    log_prob: the classifier's log p(y | x_t, t) of the target label, (B,), whenever the model has a
    classifier. guidance_norm: ‖Δε‖ per sample, the change guidance made to ε at this step (DDPM's
    mean shift counted as its ε equivalent); None when no guidance is configured.
    noise_level: √(1−ᾱ_t) of the x_t this update started from. seconds: the update's wall time.
    """

    index: int
    num_steps: int
    timestep: int | None
    x: Tensor
    x0: Tensor | None
    log_prob: Tensor | None
    guidance_norm: Tensor | None
    noise_level: float
    seconds: float

    @property
    def is_last(self) -> bool:
        return self.index == self.num_steps


# --- step math -----------------------------------------------------------------------------------

def x0_from_eps(x: Tensor, eps: Tensor, c: StepCoefficients) -> Tensor:
    """x̂0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t."""
    return (x - c.sigma_noise * eps) / math.sqrt(c.alpha_bar)


def eps_from_x0(x: Tensor, x0: Tensor, c: StepCoefficients) -> Tensor:
    """ε = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t)."""
    return (x - math.sqrt(c.alpha_bar) * x0) / c.sigma_noise


def threshold_x0(x0: Tensor, mode: str, percentile: float = 0.995) -> Tensor:
    """`clip` to [−1, 1]; `dynamic`: s = max(1, percentile of |x̂0|) per sample, x̂0 ← clip(x̂0, ±s)/s."""
    if mode == "clip":
        return x0.clamp(-1.0, 1.0)
    if mode == "dynamic":
        s = torch.quantile(x0.abs().flatten(1), percentile, dim=1).clamp(min=1.0)
        s = s.view(-1, *([1] * (x0.dim() - 1)))
        return torch.maximum(torch.minimum(x0, s), -s) / s
    return x0


def ddpm_variance(c: StepCoefficients, kind: str, var_frac: Tensor | None) -> tuple[Tensor | float, Tensor | float]:
    """(Σ, log Σ) of p(x_{t−1} | x_t) for `fixed_small`, `fixed_large` or `learned_range`."""
    if kind == "fixed_small":
        return c.posterior_variance, c.posterior_log_variance
    if kind == "fixed_large":
        return c.large_variance, math.log(c.large_variance)
    if var_frac is None:
        raise ValueError("The learned_range variance needs a model that outputs it.")
    frac = (var_frac + 1.0) / 2.0
    log_var = frac * math.log(c.beta) + (1.0 - frac) * c.posterior_log_variance
    return log_var.exp(), log_var


def ddpm_step(
    x: Tensor, eps: Tensor, c: StepCoefficients, *, variance: str, var_frac: Tensor | None = None,
    clip: str = "none", percentile: float = 0.995, noise: Tensor | None = None,
    grad: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Ancestral step x_t → x_{t−1} ~ N(μ̃(x_t, x̂0) + Σ·grad, Σ); `grad` is s·∇log p(y|x_t).

    Returns (x_{t−1}, x̂0, Δε) where Δε is ε's equivalent of the mean shift (None without grad).
    `noise` None means the last step (no noise is added).
    """
    x0 = threshold_x0(x0_from_eps(x, eps, c), clip, percentile)
    c_x0, c_xt = c.posterior_mean_coefs
    mean = c_x0 * x0 + c_xt * x
    var, log_var = ddpm_variance(c, variance, var_frac)
    eps_shift = None
    if grad is not None:
        shift = var * grad
        mean = mean + shift
        # μ depends on ε through x̂0 with dμ/dε = −c_x0·√(1−ᾱ)/√ᾱ.
        eps_shift = -shift * math.sqrt(c.alpha_bar) / (c_x0 * c.sigma_noise)
    if noise is not None:
        std = (0.5 * log_var).exp() if isinstance(log_var, Tensor) else math.exp(0.5 * log_var)
        mean = mean + std * noise
    return mean, x0, eps_shift


def ddim_step(
    x: Tensor, eps: Tensor, c: StepCoefficients, *, eta: float = 0.0, clip: str = "none",
    percentile: float = 0.995, noise: Tensor | None = None, grad: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """x_{t−1} = √ᾱ_{t−1} x̂0 + √(1−ᾱ_{t−1}−σ²) ε + σ z, σ = η√((1−ᾱ_{t−1})/(1−ᾱ_t))√(1−ᾱ_t/ᾱ_{t−1}).

    With `grad` = s·∇log p(y|x_t): ε ← ε − √(1−ᾱ_t)·grad and x̂0 is recomputed from it. As in
    guided-diffusion, ε is re-derived from the (clipped) x̂0 before the update. Returns
    (x_{t−1}, x̂0, Δε) with Δε the classifier's change to ε (None without grad).
    """
    x0 = threshold_x0(x0_from_eps(x, eps, c), clip, percentile)
    eps = eps_from_x0(x, x0, c)
    eps_shift = None
    if grad is not None:
        eps_shift = -c.sigma_noise * grad
        eps = eps + eps_shift
        x0 = x0_from_eps(x, eps, c)
    abar, abar_prev = c.alpha_bar, c.alpha_bar_prev
    sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar)) * math.sqrt(1 - abar / abar_prev)
    x_prev = math.sqrt(abar_prev) * x0 + math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
    if noise is not None and sigma > 0:
        x_prev = x_prev + sigma * noise
    return x_prev, x0, eps_shift


# --- the loop ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Conditioning:
    """Which labels each network pass gets, derived from the request and the model (DESIGN.md)."""

    base: Tensor | None  # what unguided sampling feeds the network (null label, target, or None)
    cond: Tensor | None  # the target labels (CFG's conditional pass), or None
    null: Tensor | None  # the null labels (CFG's unconditional pass), or None
    target: Tensor | None  # the classifier's target labels, or None


def _conditioning(request: SamplingRequest, bundle: ModelBundle) -> _Conditioning:
    cfg = bundle.config
    kind = request.guidance.kind
    labels = request.labels()
    if labels is not None:
        bad = [y for y in labels if not 0 <= y < bundle.num_targets]
        if bad:
            raise ValueError(f"Label {bad[0]} is out of range for {bundle.name!r} ({bundle.num_targets} classes).")
    if request.guidance.uses_classifier and bundle.classifier is None:
        raise ValueError(f"Classifier guidance needs a classifier, and {bundle.name!r} has none.")
    if request.guidance.uses_cfg and not cfg.null_label:
        raise ValueError(f"Classifier-free guidance needs a model with a null label; {bundle.name!r} has none.")
    needs_label = kind != "none" or (cfg.num_classes > 0 and not cfg.null_label)
    if needs_label and labels is None:
        raise ValueError(f"Choose a target class: {kind!r} guidance on {bundle.name!r} needs one.")
    device = bundle.device
    target = None if labels is None else torch.tensor(labels, dtype=torch.long, device=device)
    null = torch.full((request.batch,), cfg.num_classes, dtype=torch.long, device=device) if cfg.null_label else None
    if cfg.num_classes == 0:
        base = None
    elif cfg.null_label:
        base = null
    else:
        base = target
    cond = target if cfg.num_classes > 0 else None
    return _Conditioning(base=base, cond=cond, null=null, target=target)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.no_grad()
def sample(request: SamplingRequest, bundle: ModelBundle, cancel: CancelToken | None = None) -> Iterator[Step]:
    """Yield the initial noise and the state after every denoising step.

    Stops early, between steps, once `cancel.is_set()`; closing the generator is equally safe.
    Raises ValueError (before yielding anything) when the request does not fit the model.
    """
    cfg = bundle.config
    schedule: Schedule = bundle.schedule.respace(request.steps)
    n = schedule.num_steps
    coefs = [schedule.coefficients(i) for i in range(n)]
    variance = request.variance or cfg.variance
    if variance == "learned_range" and not cfg.learn_sigma:
        raise ValueError(f"{bundle.name!r} does not learn its variance; use fixed_small or fixed_large.")
    clip = cfg.clip if request.clip == "auto" else request.clip
    labels = _conditioning(request, bundle)
    g = request.guidance
    guided = g.kind != "none"
    needs_step_noise = request.sampler == "ddpm" or request.eta > 0
    device = bundle.device

    noise = NoiseStream(request.seed, request.batch, cfg.data_shape, n, device)
    x = noise.initial()
    yield Step(0, n, None, x, None, None, None, 1.0, 0.0)

    for k in range(1, n + 1):
        if cancel is not None and cancel.is_set():
            return
        start = time.perf_counter()
        i = n - k  # schedule index, from the noisiest down to 0
        c = coefs[i]
        t = torch.full((request.batch,), c.timestep, dtype=torch.long, device=device)
        active = guided and g.active_at((k - 1) / n)

        if g.uses_cfg:
            pred = G.predict(bundle, x, t, labels.cond, labels.null, g.weight if active else 0.0)
        else:
            pred = G.predict(bundle, x, t, labels.base)

        log_prob = grad = None
        if bundle.classifier is not None and labels.target is not None:
            with_grad = active and g.uses_classifier and g.scale != 0.0
            log_prob, grad = G.classifier_log_prob(bundle, x, t, labels.target, with_grad)
            if grad is not None:
                grad = g.scale * grad

        z = noise.step() if needs_step_noise else None
        z = z if i > 0 else None
        if request.sampler == "ddpm":
            x, x0, eps_shift = ddpm_step(
                x, pred.eps, c, variance=variance, var_frac=pred.var_frac, clip=clip,
                percentile=request.dynamic_percentile, noise=z, grad=grad,
            )
        else:
            x, x0, eps_shift = ddim_step(
                x, pred.eps, c, eta=request.eta, clip=clip, percentile=request.dynamic_percentile,
                noise=z, grad=grad,
            )
        norm = None
        if guided:
            delta = sum(d for d in (pred.cfg_term, eps_shift) if d is not None)
            norm = delta.flatten(1).norm(dim=1) if isinstance(delta, Tensor) else torch.zeros(request.batch, device=device)
        _synchronize(device)
        yield Step(k, n, c.timestep, x, x0, log_prob, norm, c.sigma_noise, time.perf_counter() - start)


def final_sample(request: SamplingRequest, bundle: ModelBundle) -> Step:
    """Drain `sample` and return its last Step."""
    last = None
    for last in sample(request, bundle):
        pass
    assert last is not None
    return last
