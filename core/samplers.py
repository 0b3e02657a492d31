"""DDPM and DDIM steps and the one step iterator every consumer drains (DESIGN.md, "Math contract").

Each step function is pure: it takes x_t, the network's ε̂ at x_t and the step's scalars, and returns
x_{t−1} and x̂0. `sample` runs the loop and yields one frozen `Step` per denoising step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Union

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
    log_prob: the classifier's log p(y | x_t, t) of the target label, (B,); log_probs: of every
    class, (B, K). Both are None at steps where the diagnostics were not asked for (`sample`'s
    `diagnostics`), except that classifier guidance computes them anyway, at no extra cost.
    guidance_norm: ‖Δε‖ per sample, the change guidance made to ε at this step (DDPM's mean shift
    counted as its ε equivalent); None when no guidance is configured.
    cfg_term: w·(ε_c − ε_u), (B, …), the part of ε̂ that CFG added (None without CFG at this step).
    classifier_term: the classifier's change to ε, (B, …): −√(1−ᾱ_t)·s·∇log p for DDIM, the ε
    equivalent of the mean shift Σ·s·∇log p for DDPM (None without classifier guidance at this step).
    Δε = cfg_term + classifier_term: these are the tensors the update used, not recomputations.
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
    log_probs: Tensor | None = None
    cfg_term: Tensor | None = None
    classifier_term: Tensor | None = None

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

def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


Diagnostics = Union[bool, Callable[[int], bool]]


@torch.no_grad()
def sample(
    request: SamplingRequest, bundle: ModelBundle, cancel: CancelToken | None = None, *,
    diagnostics: Diagnostics = False,
) -> Iterator[Step]:
    """Yield the initial noise and the state after every denoising step.

    Stops early, between steps, once `cancel.is_set()`; closing the generator is equally safe.
    Raises ValueError (before yielding anything) when the request does not fit the model.
    diagnostics: whether to compute the per-step extras that cost a pass of their own (the
    classifier's p(y | x_t) when it is not guiding): True every step, False never, or a callable
    asked with the step index k = 1 … n before each update.
    """
    cfg = bundle.config
    schedule: Schedule = bundle.sampling_schedule(request.steps)
    n = schedule.num_steps
    coefs = [schedule.coefficients(i) for i in range(n)]
    variance = request.variance or cfg.variance
    if variance == "learned_range" and not cfg.learn_sigma:
        raise ValueError(f"{bundle.name!r} does not learn its variance; use fixed_small or fixed_large.")
    clip = cfg.clip if request.clip == "auto" else request.clip
    conds = bundle.conditions(request)
    g = request.guidance
    guided = g.kind != "none"
    needs_step_noise = request.sampler == "ddpm" or request.eta > 0
    device = bundle.device

    wants_diagnostics = diagnostics if callable(diagnostics) else (lambda _k: bool(diagnostics))
    noise = NoiseStream(request.seed, request.batch, bundle.sample_shape(request), n, device)
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
            pred = G.predict(bundle, x, t, conds.cond, conds.null, g.weight if active else 0.0)
        else:
            pred = G.predict(bundle, x, t, conds.base)

        log_prob = log_probs = grad = None
        if bundle.classifier is not None and conds.target is not None:
            with_grad = active and g.uses_classifier and g.scale != 0.0
            if with_grad or wants_diagnostics(k):
                log_probs, grad = G.classifier_log_probs(bundle, x, t, conds.target, with_grad)
                log_prob = log_probs.gather(1, conds.target[:, None])[:, 0]
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
        yield Step(k, n, c.timestep, x, x0, log_prob, norm, c.sigma_noise, time.perf_counter() - start,
                   log_probs=log_probs, cfg_term=pred.cfg_term, classifier_term=eps_shift)


def final_sample(request: SamplingRequest, bundle: ModelBundle, *, diagnostics: Diagnostics = False) -> Step:
    """Drain `sample` and return its last Step."""
    last = None
    for last in sample(request, bundle, diagnostics=diagnostics):
        pass
    assert last is not None
    return last
