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
from .conditioning import Conditions
from .device import synchronize
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
    twin_x, twin_x0: the unguided twin's sample and x̂0 (`sample(..., twin=True)`), else None.
    noise_level: √(1−ᾱ_t) of the x_t this update started from. seconds: the update's wall time on the
    host. The loop itself never waits for the device, so on CUDA this is the time to queue the update
    (`core.recording.Recorder` lets the host queue one update while the GPU computes the one before).
    diagnostics_seconds: the part of it spent on diagnostics that cost a pass of their own, timed
    with a wait for the device (0.0 when none were asked for, or when classifier guidance computed
    them anyway).
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
    twin_x: Tensor | None = None
    twin_x0: Tensor | None = None
    diagnostics_seconds: float = 0.0

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
    eps_from_clipped: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """x_{t−1} = √ᾱ_{t−1} x̂0 + √(1−ᾱ_{t−1}−σ²) ε + σ z, σ = η√((1−ᾱ_{t−1})/(1−ᾱ_t))√(1−ᾱ_t/ᾱ_{t−1}).

    With `grad` = s·∇log p(y|x_t): ε ← ε − √(1−ᾱ_t)·grad and x̂0 is recomputed from it. With
    `eps_from_clipped` (guided-diffusion) ε is re-derived from the (clipped) x̂0 before the update;
    without it (diffusers) the network's ε is kept. Returns (x_{t−1}, x̂0, Δε) with Δε the
    classifier's change to ε (None without grad).
    """
    x0 = threshold_x0(x0_from_eps(x, eps, c), clip, percentile)
    if eps_from_clipped:
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

def _clock(device: torch.device) -> float:
    """perf_counter once the device has finished the work queued so far."""
    synchronize(device)
    return time.perf_counter()


Diagnostics = Union[bool, Callable[[int], bool]]


@dataclass(frozen=True)
class _Plan:
    """What every update of one run shares: coefficients of its schedule, condition batches, variance, x̂0
    handling. `sample` and `update_terms` both step through it, so both compute exactly the same math."""

    request: SamplingRequest
    bundle: ModelBundle
    schedule: Schedule
    conds: Conditions
    variance: str
    clip: str

    @classmethod
    def of(cls, request: SamplingRequest, bundle: ModelBundle) -> "_Plan":
        """ValueError when the request does not fit the model."""
        cfg = bundle.config
        schedule: Schedule = bundle.sampling_schedule(request.steps, request.sampler)
        variance = request.variance or cfg.variance
        if variance == "learned_range" and not cfg.learn_sigma:
            raise ValueError(f"{bundle.name!r} does not learn its variance; use fixed_small or fixed_large.")
        clip = cfg.clip if request.clip == "auto" else request.clip
        return cls(request, bundle, schedule, bundle.conditions(request), variance, clip)

    @property
    def num_steps(self) -> int:
        return self.schedule.num_steps

    def coefficients(self, k: int) -> StepCoefficients:
        """The scalars of update k = 1 … n (from the noisiest timestep down to 0), from the schedule when asked
        (it keeps them): an arrow field's `update_terms` needs one step's, not a whole run's."""
        return self.schedule.coefficients(self.num_steps - k)

    def strengths(self, k: int) -> tuple[float, float]:
        """(w, s) in force at update k: the CFG weight and the classifier scale, 0 where they do not act."""
        g = self.request.guidance
        active = g.kind != "none" and g.active_at((k - 1) / self.num_steps)
        return (g.weight if active and g.uses_cfg else 0.0, g.scale if active and g.uses_classifier else 0.0)

    def predict(self, x: Tensor, t: Tensor, weight: float, twin_x: Tensor | None = None) -> G.Prediction:
        """ε̂ at x (CFG with `weight` when the guidance uses it), and the unguided twin's ε at `twin_x`."""
        conds = self.conds
        uses_cfg = self.request.guidance.uses_cfg
        cond = conds.cond if uses_cfg else conds.base  # the twin's condition: guidance off, w = s = 0
        twin = None if twin_x is None else (twin_x, cond)
        return G.predict(self.bundle, x, t, cond, conds.null if uses_cfg else None, weight, twin)

    @property
    def can_classify(self) -> bool:
        """Whether p(y | x_t) exists for this run: a classifier and a target label."""
        return self.bundle.classifier is not None and self.conds.target is not None

    def classify(self, x: Tensor, t: Tensor, scale: float, diagnose: bool) -> tuple[Tensor | None, Tensor | None]:
        """(log p(k | x_t) of every class or None, s·∇log p(y | x_t) or None): computed only when the
        classifier guides (s ≠ 0) or `diagnose` asks for it."""
        if not self.can_classify or not (scale != 0.0 or diagnose):
            return None, None
        log_probs, grad = G.classifier_log_probs(self.bundle, x, t, self.conds.target, scale != 0.0)
        return log_probs, None if grad is None else scale * grad

    def update(self, x: Tensor, pred: G.Prediction, k: int, noise: Tensor | None,
               grad: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Update k from x with the prediction `pred`: (x_{t−1}, x̂0, the classifier's Δε or None)."""
        c, request = self.coefficients(k), self.request
        if request.sampler == "ddpm":
            return ddpm_step(x, pred.eps, c, variance=self.variance, var_frac=pred.var_frac, clip=self.clip,
                             percentile=request.dynamic_percentile, noise=noise, grad=grad)
        return ddim_step(x, pred.eps, c, eta=request.eta, clip=self.clip, percentile=request.dynamic_percentile,
                         noise=noise, grad=grad, eps_from_clipped=self.schedule.convention == "guided-diffusion")


@torch.inference_mode()
def sample(
    request: SamplingRequest, bundle: ModelBundle, cancel: CancelToken | None = None, *,
    diagnostics: Diagnostics = False, twin: bool = False,
) -> Iterator[Step]:
    """Yield the initial noise and the state after every denoising step.

    Stops early, between steps, once `cancel.is_set()`; closing the generator is equally safe.
    Raises ValueError (before yielding anything) when the request does not fit the model.
    diagnostics: whether to compute the per-step extras that cost a pass of their own (the
    classifier's p(y | x_t) when it is not guiding): True every step, False never, or a callable
    asked with the step index k = 1 … n before each update where they would cost a pass (e.g. a
    `core.diagnostics.DiagnosticsBudget`); their time is reported as `Step.diagnostics_seconds`.
    twin: also sample the unguided twin (`SamplingRequest.unguided`: the same run with w = s = 0) from
    the same noise, reported as `Step.twin_x` / `twin_x0`. Until guidance first acts the twin IS this
    run and costs nothing; from then on its pass joins the network's forward (B more samples).
    """
    plan = _Plan.of(request, bundle)
    n = plan.num_steps
    guided = request.guidance.kind != "none"
    needs_step_noise = request.sampler == "ddpm" or request.eta > 0
    device = bundle.device

    wants_diagnostics = diagnostics if callable(diagnostics) else (lambda _k: bool(diagnostics))
    noise = NoiseStream(request.seed, request.batch, bundle.sample_shape(request), n, device)
    x = noise.initial()
    yield Step(0, n, None, x, None, None, None, 1.0, 0.0, twin_x=x if twin else None)

    twin_x: Tensor | None = None  # the twin's sample once it has parted from this run's
    for k in range(1, n + 1):
        if cancel is not None and cancel.is_set():
            return
        start = time.perf_counter()
        c = plan.coefficients(k)
        t = torch.full((request.batch,), c.timestep, dtype=torch.long, device=device)
        weight, scale = plan.strengths(k)
        if twin and twin_x is None and (weight != 0.0 or scale != 0.0):
            twin_x = x  # guidance acts for the first time: from here on the twin takes its own path
        pred = plan.predict(x, t, weight, twin_x)
        paid = plan.can_classify and scale == 0.0 and wants_diagnostics(k)
        diagnosed_at = _clock(device) if paid else 0.0
        log_probs, grad = plan.classify(x, t, scale, paid)
        diagnostics_seconds = _clock(device) - diagnosed_at if paid else 0.0
        log_prob = None if log_probs is None else log_probs.gather(1, plan.conds.target[:, None])[:, 0]

        z = noise.step() if needs_step_noise else None
        z = z if (k < n or plan.schedule.noise_at_last_step) else None
        x_prev, x0, eps_shift = plan.update(x, pred, k, z, grad)
        twin_x0 = x0 if twin else None
        if twin_x is not None:
            twin_x, twin_x0, _ = plan.update(twin_x, pred.twin, k, z, None)
        x = x_prev
        norm = None
        if guided:
            delta = sum(d for d in (pred.cfg_term, eps_shift) if d is not None)
            norm = delta.flatten(1).norm(dim=1) if isinstance(delta, Tensor) else torch.zeros(request.batch, device=device)
        yield Step(k, n, c.timestep, x, x0, log_prob, norm, c.sigma_noise, time.perf_counter() - start,
                   log_probs=log_probs, cfg_term=pred.cfg_term, classifier_term=eps_shift,
                   twin_x=(x if twin_x is None else twin_x) if twin else None, twin_x0=twin_x0,
                   diagnostics_seconds=diagnostics_seconds)


@dataclass(frozen=True)
class UpdateTerms:
    """What one update computes at some points (N, …): eps, the model's own ε there with guidance
    left out (ε_c under CFG, the base prediction otherwise), and the two guidance terms, as in `Step`."""

    eps: Tensor
    cfg_term: Tensor | None
    classifier_term: Tensor | None


@torch.inference_mode()
def update_terms(request: SamplingRequest, bundle: ModelBundle, x: Tensor, k: int) -> UpdateTerms:
    """Update k (1 … n) of `request` evaluated at arbitrary points x (N, …), as if they were its samples
    (all with the request's first target label): the same code path `sample` takes, without noise.

    For fields of arrows over the plane: at a sample's own x_t this gives exactly that Step's terms.
    """
    labels = request.labels()
    plan = _Plan.of(request.replace(batch=len(x), label=None if labels is None else labels[0]), bundle)
    if not 1 <= k <= plan.num_steps:
        raise ValueError(f"Update {k} is outside this run's 1 … {plan.num_steps}.")
    x = x.to(bundle.device)
    t = torch.full((len(x),), plan.coefficients(k).timestep, dtype=torch.long, device=bundle.device)
    weight, scale = plan.strengths(k)
    pred = plan.predict(x, t, weight)
    _, grad = plan.classify(x, t, scale, False)
    _, _, eps_shift = plan.update(x, pred, k, None, grad)
    eps = pred.eps if pred.cfg_term is None else pred.eps - pred.cfg_term
    return UpdateTerms(eps, pred.cfg_term, eps_shift)


def final_sample(request: SamplingRequest, bundle: ModelBundle, *, diagnostics: Diagnostics = False) -> Step:
    """Drain `sample` and return its last Step."""
    last = None
    for last in sample(request, bundle, diagnostics=diagnostics):
        pass
    assert last is not None
    return last
