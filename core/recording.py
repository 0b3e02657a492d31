"""A run's Steps → the named per-step tracks of a `runs.RunResult` (the app's worker thread, the CLI).

Previews are made where the step is, so only small arrays cross threads: images become uint8
(B, h, w, C) arrays strided so the batch's grid stays near `max_side` pixels and the whole run within
MEMORY_BUDGET; 2-D points are kept as float16 (B, 2). Readers on other threads may read a track's
first `len(recorder)` entries while steps are appended: `noise_level` is appended last, so len()
counts only complete steps.

More per-step data are added by name: `Recorder(..., extras={"cfg_map": fn})` calls fn(step, recorder)
at every step and keeps what it returns (an array, a number or None) as the track "cfg_map", which
the run file then saves and reopens like the standard ones. Use `recorder.preview(tensor)` for
image-like values so they follow the run's preview size.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .images import pixels
from .requests import SamplingRequest
from .runs import ELAPSED, NOISE, NORM, PROB, TIMESTEP, X0, XT, RunResult
from .samplers import Step

MEMORY_BUDGET = 768 * 2**20  # bytes of image previews one run may keep in memory (all image tracks)
MAX_SIDE = 512  # a preview grid's longest side, about what a view pane shows

Extra = Callable[[Step, "Recorder"], Any]


class Recorder:
    """Every step of one run, appended with `add`; `result()` packs what was recorded into a RunResult.

    picture: maps samples to images in [−1, 1] before previewing (a latent model's `bundle.preview`).
    """

    def __init__(self, request: SamplingRequest, model_name: str, device: str, is_points: bool, *,
                 picture: Callable[[torch.Tensor], torch.Tensor] | None = None, max_side: int = MAX_SIDE,
                 extras: dict[str, Extra] | None = None):
        self.request = request
        self.model_name = model_name
        self.device = device
        self.is_points = is_points
        self.picture = picture
        self.max_side = max_side
        self.extras = dict(extras or {})
        names = (XT, X0, TIMESTEP, ELAPSED, PROB, NORM, *self.extras, NOISE)
        self.tracks: dict[str, list[Any]] = {name: [] for name in names}
        self.num_steps = 0
        self.stride = 1
        self._last_x: torch.Tensor | None = None
        self._start = time.perf_counter()

    @classmethod
    def for_bundle(cls, request: SamplingRequest, bundle: Any, **kwargs: Any) -> Recorder:
        """A recorder for a run of `request` on `bundle` (its name, device and preview)."""
        return cls(request, bundle.name, str(bundle.device), len(bundle.config.data_shape) == 1,
                   picture=bundle.preview, **kwargs)

    def __len__(self) -> int:
        return len(self.tracks[NOISE])

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` out of the run's time (it was held between steps, e.g. paused by the user)."""
        self._start += seconds

    def preview(self, x: torch.Tensor) -> np.ndarray:
        """One step's samples as stored: points (B, 2) float16, images (B, h, w, C) uint8."""
        if self.is_points:
            return x.detach().float().cpu().numpy().astype(np.float16)
        if self.picture is not None:
            x = self.picture(x)
        return pixels(x[..., ::self.stride, ::self.stride])

    def _fit(self, step: Step) -> None:
        """At the first step: the stride that keeps a grid near max_side and the run within MEMORY_BUDGET."""
        self.num_steps = step.num_steps
        if self.is_points:
            return
        x = step.x if self.picture is None else self.picture(step.x[:1])
        b, c = step.x.shape[0], (1 if x.shape[1] < 3 else 3)
        h, w = x.shape[-2:]
        cols = math.ceil(math.sqrt(b))
        view = math.ceil(max(h, w) * cols / self.max_side)
        image_tracks = 2 + len(self.extras)  # extras may be images too: leave them their share
        frames = image_tracks * (step.num_steps + 1)
        memory = math.ceil(math.sqrt(frames * b * h * w * c / MEMORY_BUDGET))
        self.stride = max(1, view, memory)

    def add(self, step: Step) -> int:
        """Record `step`; its index. FloatingPointError when the sample is no longer finite."""
        if not bool(torch.isfinite(step.x).all()):
            raise FloatingPointError(
                f"Sampling produced NaN or infinite values at step {step.index} of {step.num_steps}"
                f" (t = {step.timestep}). Try a smaller guidance strength, fp32, or fewer/more steps."
            )
        if not len(self):
            self._fit(step)
        tracks = self.tracks
        tracks[XT].append(self.preview(step.x))
        tracks[X0].append(None if step.x0 is None else self.preview(step.x0))
        tracks[TIMESTEP].append(step.timestep)
        tracks[ELAPSED].append(time.perf_counter() - self._start)
        tracks[PROB].append(None if step.log_prob is None else float(step.log_prob.float().exp().mean()))
        tracks[NORM].append(None if step.guidance_norm is None else float(step.guidance_norm.float().mean()))
        for name, make in self.extras.items():
            tracks[name].append(make(step, self))
        self._last_x = step.x
        tracks[NOISE].append(float(step.noise_level))  # last: len() counts complete steps
        return len(self) - 1

    def result(self, completed: bool) -> RunResult:
        """The run so far; ValueError when it stopped before its first step."""
        n = len(self)
        if n == 0 or self._last_x is None:
            raise ValueError("The run stopped before its first step; there is nothing to keep.")
        return RunResult(
            request=self.request, model_name=self.model_name, device=self.device,
            seconds=time.perf_counter() - self._start, samples=self._last_x.detach().float().cpu().numpy(),
            tracks={name: values[:n] for name, values in self.tracks.items()}, num_steps=self.num_steps,
            completed=completed,
        )
