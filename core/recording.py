"""A run's Steps → the named per-step tracks of a `runs.RunResult` (the app's worker thread, the CLI).

Previews are made where the step is, so only small arrays cross threads: images become uint8
(B, h, w, C) arrays strided so the batch's grid stays near `max_side` pixels and the whole run within
MEMORY_BUDGET; 2-D points are kept as float16 (B, 2). Readers on other threads may read a track's
first `len(recorder)` entries while steps are appended: `noise_level` is appended last, so len()
counts only complete steps.

More per-step data are added by name: `Recorder(..., extras={"cfg_map": fn})` calls fn(step, recorder)
at every step and keeps what it returns (an array, a number or None) as the track "cfg_map", which
the run file then saves and reopens like the standard ones. Use `recorder.preview(tensor)` for
image-like values so they follow the run's preview size; an extra that makes none is marked with
`no_previews(fn)`, so that the previews' memory is shared only among those that do.

On a CUDA device the sampler must not wait for the GPU between steps: the GPU would idle while the host
finishes one step and queues the next (a few % of a Stable Diffusion step). So a step is recorded in two
halves. `add(step)` queues the device work of its values (previews, means, the finite check) and their
copies to the host, and returns at once; the host half (numpy arrays, the NaN check) is done when the
next step is added, by which time the GPU has the next step queued behind it, or by `flush()`. A value
whose host half waits for such a copy is a `Later`; track functions may return one too.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .images import pixel_tensor
from .requests import SamplingRequest
from .runs import ELAPSED, NOISE, NORM, PROB, TIMESTEP, X0, XT, RunResult
from .samplers import Step

MEMORY_BUDGET = 768 * 2**20  # bytes of image previews one run may keep in memory (all image tracks)
MAX_SIDE = 512  # a preview grid's longest side, about what a view pane shows

Extra = Callable[[Step, "Recorder"], Any]


def _identity(value: Any) -> Any:
    return value


def no_previews(extra: Extra) -> Extra:
    """`extra`, marked as a track that keeps no image previews (numbers, or maps of their own size)."""
    extra.makes_previews = False  # type: ignore[attr-defined]
    return extra


@dataclass(frozen=True)
class Later:
    """A track value still on its way from the device: `then(array)` makes the value kept from `tensor`'s host
    copy (a numpy array), once the device has computed it."""

    tensor: torch.Tensor
    then: Callable[[np.ndarray], Any] = _identity


@dataclass
class _Queued:
    """A step whose device half is queued: its values (some `Later`), their host copies, and the event after them."""

    step: Step
    values: dict[str, Any]
    copies: dict[str, torch.Tensor]
    done: Any  # a torch.cuda.Event, or None where the copies were made synchronously


class Recorder:
    """Every step of one run, appended with `add`; `result()` packs what was recorded into a RunResult.

    picture: maps samples to images in [−1, 1] before previewing (a latent model's `bundle.preview`).
    lag: complete each step's host half when the next step is added (see the module); None: on CUDA devices.
    """

    def __init__(self, request: SamplingRequest, model_name: str, device: str, is_points: bool, *,
                 picture: Callable[[torch.Tensor], torch.Tensor] | None = None, max_side: int = MAX_SIDE,
                 extras: dict[str, Extra] | None = None, lag: bool | None = None):
        self.request = request
        self.model_name = model_name
        self.device = device
        self.is_points = is_points
        self.picture = picture
        self.max_side = max_side
        self.extras = dict(extras or {})
        self.lag = torch.device(device).type == "cuda" if lag is None else lag
        names = (XT, X0, TIMESTEP, ELAPSED, PROB, NORM, *self.extras, NOISE)
        self.tracks: dict[str, list[Any]] = {name: [] for name in names}
        self.num_steps = 0
        self.stride = 1
        self._last_x: torch.Tensor | None = None
        self._queued: _Queued | None = None
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

    def preview(self, x: torch.Tensor) -> Later:
        """One step's samples as stored: points (B, 2) float16, images (B, h, w, C) uint8."""
        if self.is_points:
            return Later(x.detach().float(), _float16)
        if self.picture is not None:
            x = self.picture(x)
        return Later(pixel_tensor(x[..., ::self.stride, ::self.stride]))

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
        image_tracks = 2 + sum(getattr(extra, "makes_previews", True) for extra in self.extras.values())
        frames = image_tracks * (step.num_steps + 1)
        memory = math.ceil(math.sqrt(frames * b * h * w * c / MEMORY_BUDGET))
        self.stride = max(1, view, memory)

    def add(self, step: Step) -> int | None:
        """Record `step`: the index of the step whose record this completes (`step`'s own; with `lag` the
        previous one, None at the first), so that `len()` steps are complete. FloatingPointError when the
        completed step's sample is no longer finite."""
        if self._queued is None and not len(self):
            self._fit(step)
        queued = self._queue(step)
        if not self.lag:
            return self._complete(queued)
        previous, self._queued = self._queued, queued
        return None if previous is None else self._complete(previous)

    def flush(self) -> int | None:
        """Complete the step still queued (with `lag`): its index, or None when none is."""
        queued, self._queued = self._queued, None
        return None if queued is None else self._complete(queued)

    def _queue(self, step: Step) -> _Queued:
        """The device half of `step`: every value, the device work of those that need it queued with their copies."""
        values: dict[str, Any] = {
            "finite": Later(torch.isfinite(step.x).all(), bool),
            XT: self.preview(step.x),
            X0: None if step.x0 is None else self.preview(step.x0),
            PROB: None if step.log_prob is None else Later(step.log_prob.float().exp().mean(), float),
            NORM: None if step.guidance_norm is None else Later(step.guidance_norm.float().mean(), float),
        }
        for name, make in self.extras.items():
            values[name] = make(step, self)
        later = {name: v.tensor for name, v in values.items() if isinstance(v, Later)}
        cuda = any(t.device.type == "cuda" for t in later.values())
        copied: dict[int, torch.Tensor] = {}  # values that share a tensor share its copy
        for t in later.values():
            if id(t) not in copied:
                copied[id(t)] = t.detach().to("cpu", non_blocking=cuda)
        copies = {name: copied[id(t)] for name, t in later.items()}
        done = None
        if cuda:
            done = torch.cuda.Event()
            done.record()
        return _Queued(step, values, copies, done)

    def _complete(self, queued: _Queued) -> int:
        """The host half of a queued step: its values become the tracks' next entries; its index."""
        if queued.done is not None:
            queued.done.synchronize()
        step = queued.step
        values = {name: v.then(queued.copies[name].numpy()) if isinstance(v, Later) else v
                  for name, v in queued.values.items()}
        if not values.pop("finite"):
            raise FloatingPointError(
                f"Sampling produced NaN or infinite values at step {step.index} of {step.num_steps}"
                f" (t = {step.timestep}). Try a smaller guidance strength, fp32, or fewer/more steps."
            )
        tracks = self.tracks
        for name, value in values.items():
            tracks[name].append(value)
        tracks[TIMESTEP].append(step.timestep)
        tracks[ELAPSED].append(time.perf_counter() - self._start)
        self._last_x = step.x
        tracks[NOISE].append(float(step.noise_level))  # last: len() counts complete steps
        return len(self) - 1

    def result(self, completed: bool) -> RunResult:
        """The run so far (a step still queued is completed first); ValueError when it stopped before its first step."""
        self.flush()
        n = len(self)
        if n == 0 or self._last_x is None:
            raise ValueError("The run stopped before its first step; there is nothing to keep.")
        return RunResult(
            request=self.request, model_name=self.model_name, device=self.device,
            seconds=time.perf_counter() - self._start, samples=self._last_x.detach().float().cpu().numpy(),
            tracks={name: values[:n] for name, values in self.tracks.items()}, num_steps=self.num_steps,
            completed=completed,
        )


def _float16(points: np.ndarray) -> np.ndarray:
    return points.astype(np.float16)
