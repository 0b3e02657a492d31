"""Schedules exactly as a diffusers pipeline defines them, from its scheduler config (a plain dict).

No diffusers import: ᾱ from `beta_schedule` (linear, scaled_linear, squaredcos_cap_v2) or `trained_betas`,
optionally rescaled to zero terminal SNR, and the timesteps the DDIM and DDPM schedulers pick for N steps
(`timestep_spacing` leading / trailing / linspace, `steps_offset`). β and ᾱ are computed with the same
float32 torch operations as the schedulers, so they agree bit for bit.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from ..schedule import Schedule

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
_DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
             "trained_betas": None, "timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": True,
             "rescale_betas_zero_snr": False, "prediction_type": "epsilon"}


def setting(config: Mapping[str, Any], key: str) -> Any:
    """A scheduler setting, or the default diffusers' DDIM/DDPM schedulers use when the config omits it."""
    value = config.get(key)
    return _DEFAULTS[key] if value is None and key != "trained_betas" else value


def squaredcos_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """`squaredcos_cap_v2`: β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999), ᾱ(s) = cos²((s+0.008)/1.008 · π/2)."""
    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
                     for i in range(num_timesteps)], dtype=np.float64)


def zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale β so that ᾱ_{T−1} = 0 while ᾱ_0 stays (Lin et al. 2023, Algorithm 1)."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    abar = root**2
    return 1.0 - torch.cat([abar[:1], abar[1:] / abar[:-1]])


def train_betas(config: Mapping[str, Any]) -> torch.Tensor:
    """β over the T training timesteps, float32, computed as diffusers computes them."""
    t = int(setting(config, "num_train_timesteps"))
    if t < 1:
        raise ValueError(f"The scheduler config has {t} training timesteps.")
    trained = setting(config, "trained_betas")
    name = setting(config, "beta_schedule")
    start, end = float(setting(config, "beta_start")), float(setting(config, "beta_end"))
    if trained is not None:
        try:
            betas = torch.tensor(trained, dtype=torch.float32)
        except (TypeError, ValueError):
            betas = torch.empty(0)
        if betas.dim() != 1 or not len(betas):
            raise ValueError("The scheduler config's trained_betas is not a list of numbers.")
    elif name == "linear":
        betas = torch.linspace(start, end, t, dtype=torch.float32)
    elif name == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, t, dtype=torch.float32) ** 2
    elif name == "squaredcos_cap_v2":
        betas = torch.tensor(squaredcos_betas(t), dtype=torch.float32)
    else:
        raise ValueError(f"Unsupported beta_schedule {name!r} in the scheduler config; "
                         f"this app reads {', '.join(BETA_SCHEDULES)} or trained_betas.")
    if setting(config, "rescale_betas_zero_snr"):
        betas = zero_terminal_snr(betas)
    return betas


def train_alphas_cumprod(config: Mapping[str, Any]) -> np.ndarray:
    """ᾱ_t = ∏(1 − β_i), accumulated in float32 like the scheduler, returned as float64.

    A zero-terminal-SNR schedule ends on ᾱ = 0, where x̂0 = (x − √(1−ᾱ)ε)/√ᾱ is undefined; the last ᾱ
    is then 2⁻²⁴, as diffusers' Euler scheduler does, so ε-models stay usable.
    """
    abar = torch.cumprod(1.0 - train_betas(config), dim=0).double().numpy()
    if abar[-1] <= 0:
        abar[-1] = 2.0**-24
    return abar


def inference_timesteps(config: Mapping[str, Any], steps: int) -> np.ndarray:
    """The timesteps diffusers' DDIM/DDPM schedulers visit for `steps` steps, noisiest first (int64)."""
    t = int(setting(config, "num_train_timesteps"))
    if not 1 <= steps <= t:
        raise ValueError(f"Choose from 1 to {t} steps for this model's scheduler, not {steps}.")
    spacing = setting(config, "timestep_spacing")
    if spacing == "linspace":
        return np.linspace(0, t - 1, steps).round()[::-1].astype(np.int64)
    if spacing == "leading":
        ratio = t // steps
        return (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64) + int(setting(config, "steps_offset"))
    if spacing == "trailing":
        return np.round(np.arange(t, 0, -t / steps)).astype(np.int64) - 1
    raise ValueError(f"Unsupported timestep_spacing {spacing!r}; choose one of {', '.join(SPACINGS)}.")


def pipeline_schedule(config: Mapping[str, Any], steps: int, sampler: str) -> Schedule:
    """The schedule diffusers' DDIMScheduler (`sampler` "ddim") or DDPMScheduler ("ddpm") walks for
    `steps` steps with this config.

    DDIM lands each step on t − T//N (whatever the spacing) and the last on `final_alpha_cumprod`: 1, or
    ᾱ_0 when `set_alpha_to_one` is false. DDPM lands on the next visited timestep and the last on 1.
    """
    abar = train_alphas_cumprod(config)
    visited = inference_timesteps(config, steps)
    if visited.max() >= len(abar):
        raise ValueError(f"steps_offset {setting(config, 'steps_offset')} pushes {steps} steps past the last "
                         f"training timestep {len(abar) - 1}.")
    if sampler == "ddim":
        final = 1.0 if setting(config, "set_alpha_to_one") else float(abar[0])
        prev = visited - len(abar) // steps
        abar_prev = np.array([abar[p] if p >= 0 else final for p in prev])
    elif sampler == "ddpm":
        abar_prev = np.append(abar[visited[1:]], 1.0)
    else:
        raise ValueError(f"Unknown sampler {sampler!r}.")
    # The engine indexes steps from the least noisy (i = 0) up.
    return Schedule(abar[visited][::-1].copy(), abar_prev[::-1].copy(), visited[::-1].copy(), convention="diffusers")
