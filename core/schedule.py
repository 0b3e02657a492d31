"""Noise schedules and timestep respacing (DESIGN.md, "Math contract").

Everything here is computed once, in float64 numpy, and read by the samplers as Python floats, so
the per-step math never indexes device tensors and devices without float64 (Apple MPS) are fine.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

SCHEDULES = ("linear", "cosine")


def linear_betas(num_timesteps: int) -> np.ndarray:
    """β linearly from 1e-4·1000/T to 0.02·1000/T (Ho et al., rescaled to T steps)."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """β_t = min(1 − ᾱ(t+1)/ᾱ(t), max_beta) with ᾱ(t) = cos²(((t/T)+0.008)/1.008 · π/2)."""
    def alpha_bar(t: float) -> float:
        return math.cos((t / num_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [min(1.0 - alpha_bar(t + 1) / alpha_bar(t), max_beta) for t in range(num_timesteps)],
        dtype=np.float64,
    )


def make_betas(name: str, num_timesteps: int) -> np.ndarray:
    """The β sequence of a named schedule."""
    if num_timesteps < 1:
        raise ValueError(f"A schedule needs at least one timestep, got {num_timesteps}.")
    if name == "linear":
        return linear_betas(num_timesteps)
    if name == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"Unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")


def parse_respacing(spec: str | int, num_timesteps: int) -> list[int]:
    """The sorted original timesteps kept by a guided-diffusion respacing spec.

    `"ddimN"` keeps `range(0, T, stride)` for the smallest stride giving exactly N steps; `"N"` or
    `"a,b,c"` splits [0, T) into equal sections and keeps that many evenly spaced steps of each
    (rounded, both ends included). An integer N means `"N"`.
    """
    text = str(spec).strip().lower()
    if text.startswith("ddim"):
        try:
            wanted = int(text[4:])
        except ValueError:
            raise ValueError(f"Bad respacing {spec!r}: 'ddim' must be followed by a step count.") from None
        for stride in range(1, num_timesteps + 1):
            if len(range(0, num_timesteps, stride)) == wanted:
                return list(range(0, num_timesteps, stride))
        raise ValueError(f"Cannot take exactly {wanted} evenly strided steps out of {num_timesteps}.")
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"Bad respacing {spec!r}: use a step count like '50', 'ddim50', or sections like '10,15,20'."
        ) from None
    if any(c < 1 for c in counts):
        raise ValueError(f"Bad respacing {spec!r}: every section needs at least one step.")
    base, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = base + (1 if i < extra else 0)
        if count > size:
            raise ValueError(
                f"Bad respacing {spec!r}: a section of {size} timesteps cannot hold {count} steps."
            )
        stride = (size - 1) / (count - 1) if count > 1 else 1.0
        kept += [start + round(j * stride) for j in range(count)]
        start += size
    return sorted(set(kept))


CONVENTIONS = ("guided-diffusion", "diffusers")
_DIFFUSERS_MIN_VARIANCE = 1e-20  # diffusers' DDPM floors β̃ here before taking its log or square root


@dataclass(frozen=True, eq=False)
class Schedule:
    """A (possibly respaced) diffusion process: arrays indexed by step i = 0 … n−1.

    `timesteps[i]` is the ORIGINAL timestep the network and the classifier receive at step i;
    `alphas_cumprod[i]` is ᾱ there and `alphas_cumprod_prev[i]` the ᾱ that step i lands on: the previous
    kept step's, and 1 after step 0 — unless a family defines it otherwise (diffusers' DDIM lands on
    t − T//N and ends on its `final_alpha_cumprod`). β_i = 1 − ᾱ_i/ᾱ_prev,i is the step's own β.
    convention: how the reference implementation treats the edges of a run:
    - "guided-diffusion": no noise at step 0; there log β̃ and the fixed_large variance use β̃ of step 1;
      DDIM re-derives ε from the (clipped) x̂0.
    - "diffusers": step 0 adds noise when its timestep is above 0 (diffusers' DDPM; its DDIM adds σ·z at
      every step, and σ is 0 at a last step landing on ᾱ = 1), with the plain β and β̃ floored at 1e-20;
      DDIM keeps the network's ε when x̂0 is clipped.
    """

    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    timesteps: np.ndarray
    convention: str = "guided-diffusion"

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"Unknown schedule convention {self.convention!r}.")
        if not len(self.alphas_cumprod) == len(self.alphas_cumprod_prev) == len(self.timesteps) > 0:
            raise ValueError("A schedule needs as many ᾱ, ᾱ_prev and timesteps, at least one of each.")

    @property
    def num_steps(self) -> int:
        return len(self.alphas_cumprod)

    # Derived quantities, computed once on first use (float64).
    @cached_property
    def betas(self) -> np.ndarray:
        return 1.0 - self.alphas_cumprod / self.alphas_cumprod_prev

    @cached_property
    def posterior_variance(self) -> np.ndarray:
        """β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) · β_t."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def noise_at_last_step(self) -> bool:
        """Whether step 0 adds noise too (diffusers, when the run ends above timestep 0)."""
        return self.convention == "diffusers" and int(self.timesteps[0]) > 0

    @classmethod
    @functools.lru_cache(maxsize=32)
    def from_name(cls, name: str, num_timesteps: int) -> "Schedule":
        """The named schedule over num_timesteps, made once and shared (a Schedule is never changed)."""
        return cls.from_betas(make_betas(name, num_timesteps))

    @classmethod
    def from_betas(cls, betas: np.ndarray) -> "Schedule":
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("Betas must be a 1-D sequence of values in (0, 1].")
        return cls.from_alphas_cumprod(np.cumprod(1.0 - betas))

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: np.ndarray) -> "Schedule":
        """The full schedule over timesteps 0 … T−1 with these ᾱ (each step lands on the one before)."""
        abar = np.asarray(alphas_cumprod, dtype=np.float64)
        return cls(abar, np.append(1.0, abar[:-1]), np.arange(len(abar)))

    def respace(self, spec: str | int) -> "Schedule":
        """Keep the timesteps named by `spec`; β_i = 1 − ᾱ_{S_i}/ᾱ_{S_{i−1}} (ᾱ before S_0 is 1). Made once per
        spec and kept (arrow fields over the plane ask for a run's schedule at every field)."""
        if spec not in self._respaced:
            kept = parse_respacing(spec, self.num_steps)
            abar = self.alphas_cumprod[kept]
            self._respaced[spec] = Schedule(abar, np.append(1.0, abar[:-1]), self.timesteps[kept])
        return self._respaced[spec]

    @cached_property
    def _respaced(self) -> dict[str | int, "Schedule"]:
        return {}

    def coefficients(self, i: int) -> "StepCoefficients":
        """The scalars one step of either sampler needs at step i (made once per step and kept: a run asks
        for them at every update, and the arrow fields beside it again)."""
        if i not in self._coefficients:
            self._coefficients[i] = self._make_coefficients(i)
        return self._coefficients[i]

    @cached_property
    def _coefficients(self) -> dict[int, "StepCoefficients"]:
        return {}

    def _make_coefficients(self, i: int) -> "StepCoefficients":
        abar = float(self.alphas_cumprod[i])
        abar_prev = float(self.alphas_cumprod_prev[i])
        beta = float(self.betas[i])
        post_var = float(self.posterior_variance[i])
        if self.convention == "diffusers":
            log_var, large = math.log(max(post_var, _DIFFUSERS_MIN_VARIANCE)), beta
        else:
            # log β̃ is −inf at i = 0; guided-diffusion substitutes step 1's value there (and so do we).
            clipped = float(self.posterior_variance[1]) if (i == 0 and self.num_steps > 1) else post_var
            log_var = math.log(clipped) if clipped > 0 else -math.inf
            large = clipped if i == 0 else beta
        return StepCoefficients(
            timestep=int(self.timesteps[i]),
            alpha_bar=abar,
            alpha_bar_prev=abar_prev,
            beta=beta,
            posterior_variance=post_var,
            posterior_log_variance=log_var,
            large_variance=large,
        )


@dataclass(frozen=True)
class StepCoefficients:
    """Scalars of one step (Python floats computed in float64)."""

    timestep: int
    alpha_bar: float
    alpha_bar_prev: float
    beta: float
    posterior_variance: float
    posterior_log_variance: float  # log β̃ (guided-diffusion: clipped at step 0; diffusers: floored)
    large_variance: float  # `fixed_large` variance: β (guided-diffusion: β̃ of step 1 at step 0)

    @property
    def sigma_noise(self) -> float:
        """√(1−ᾱ_t): the noise scale of x_t."""
        return math.sqrt(1.0 - self.alpha_bar)

    @property
    def posterior_mean_coefs(self) -> tuple[float, float]:
        """(c_x0, c_xt) with μ̃ = c_x0·x̂0 + c_xt·x_t."""
        denom = 1.0 - self.alpha_bar
        c_x0 = math.sqrt(self.alpha_bar_prev) * self.beta / denom
        c_xt = math.sqrt(1.0 - self.beta) * (1.0 - self.alpha_bar_prev) / denom
        return c_x0, c_xt
