"""A run's trajectory as compact previews, built in the worker thread and read by the GUI (Qt-free).

Image models: each step's x_t and x̂0 become one uint8 grid over the batch (H', W', 3), shrunk so
its longest side stays near `max_side` (smaller for long runs, so a run's previews fit MEMORY_BUDGET). 2-D models: each step is the point cloud, kept as float16
(B, 2). The GUI reads frames while the worker appends (list appends are atomic under the GIL).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from core import SamplingRequest, Step
from core.images import grid, to_uint8

from .results import RunResult

MEMORY_BUDGET = 768 * 2**20  # bytes of uint8 previews one run may keep (x_t and x̂0, every step)


@dataclass(frozen=True)
class Frame:
    """One step as the views show it.

    xt, x0: (H', W', 3) uint8 grids for images, (B, 2) float32 points for 2-D models; x0 is None at
    index 0. prob: mean classifier p(y | x_t) of the target (NaN when unknown); guidance_norm: mean
    ‖Δε‖ (NaN when unguided). elapsed: seconds since the run started.
    """

    index: int
    num_steps: int
    timestep: int | None
    xt: np.ndarray
    x0: np.ndarray | None
    prob: float
    guidance_norm: float
    noise_level: float
    elapsed: float


def image_preview(x: torch.Tensor, max_side: int = 512) -> np.ndarray:
    """Images (B, C, H, W) in [−1, 1] → one uint8 grid (H', W', 3) whose side is at most ~max_side."""
    pictures = to_uint8(x)
    b, h, w, _ = pictures.shape
    cols = math.ceil(math.sqrt(b))
    stride = max(1, math.ceil(max(h, w) * cols / max_side))
    return grid(np.ascontiguousarray(pictures[:, ::stride, ::stride]), ncols=cols, pad=1 if stride > 1 else 2)


class Trajectory:
    """Every step of one run, appended from the worker; `result()` packs it into a RunResult."""

    def __init__(self, request: SamplingRequest, model_name: str, device: str, is_points: bool,
                 max_side: int = 512):
        self.request = request
        self.model_name = model_name
        self.device = device
        self.is_points = is_points
        self.max_side = max_side
        self.num_steps = 0
        self.xt: list[np.ndarray] = []
        self.x0: list[np.ndarray | None] = []
        self.prob: list[float] = []
        self.norm: list[float] = []
        self.noise: list[float] = []
        self.timesteps: list[int | None] = []
        self._log_prob: list[np.ndarray | None] = []
        self._guidance_norm: list[np.ndarray | None] = []
        self._last_x: torch.Tensor | None = None
        self._start = time.perf_counter()

    def __len__(self) -> int:
        return len(self.noise)

    def _preview(self, x: torch.Tensor) -> np.ndarray:
        if self.is_points:
            return x.detach().float().cpu().numpy().astype(np.float16)
        return image_preview(x, self.max_side)

    def add(self, step: Step) -> Frame:
        """Record `step` (worker thread). FloatingPointError when the sample is no longer finite."""
        if not bool(torch.isfinite(step.x).all()):
            raise FloatingPointError(
                f"Sampling produced NaN or infinite values at step {step.index} of {step.num_steps}"
                f" (t = {step.timestep}). Try a smaller guidance strength, fp32, or fewer/more steps."
            )
        if not self.noise and not self.is_points:  # first step: fit the whole run in the memory budget
            frames = 2 * (step.num_steps + 1)
            side = int(math.sqrt(MEMORY_BUDGET / frames / 3))
            self.max_side = max(64, min(self.max_side, side))
        self.num_steps = step.num_steps
        xt = self._preview(step.x)
        x0 = None if step.x0 is None else self._preview(step.x0)
        log_prob = None if step.log_prob is None else step.log_prob.detach().float().cpu().numpy()
        norm = None if step.guidance_norm is None else step.guidance_norm.detach().float().cpu().numpy()
        prob = float(np.exp(log_prob).mean()) if log_prob is not None else math.nan
        mean_norm = float(norm.mean()) if norm is not None else math.nan
        self._last_x = step.x
        self.xt.append(xt)
        self.x0.append(x0)
        self._log_prob.append(log_prob)
        self._guidance_norm.append(norm)
        self.prob.append(prob)
        self.norm.append(mean_norm)
        self.timesteps.append(step.timestep)
        self.noise.append(float(step.noise_level))  # appended last: len() counts complete steps
        return self.frame(len(self) - 1)

    def frame(self, index: int) -> Frame:
        """The recorded step `index` as a Frame (any thread)."""
        xt, x0 = self.xt[index], self.x0[index]
        if self.is_points:
            xt = xt.astype(np.float32)
            x0 = None if x0 is None else x0.astype(np.float32)
        return Frame(index, self.num_steps, self.timesteps[index], xt, x0, self.prob[index], self.norm[index],
                     self.noise[index], time.perf_counter() - self._start)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prob, guidance_norm, noise_level), each (steps recorded,) float64 with NaN where unknown."""
        n = len(self)
        return np.asarray(self.prob[:n]), np.asarray(self.norm[:n]), np.asarray(self.noise[:n])

    def result(self, completed: bool) -> RunResult:
        """The run so far as a RunResult (2-D frames as float32; blank x̂0 at index 0)."""
        n = len(self)
        if n == 0 or self._last_x is None:
            raise ValueError("The run stopped before its first step; there is nothing to keep.")
        samples = self._last_x.detach().float().cpu().numpy()
        xt = list(self.xt[:n])
        x0 = list(self.x0[:n])
        if self.is_points:
            xt = [f.astype(np.float32) for f in xt]
            x0 = [np.full_like(xt[0], np.nan) if f is None else f.astype(np.float32) for f in x0]
        else:
            x0 = [np.zeros_like(xt[0]) if f is None else f for f in x0]
        return RunResult(
            request=self.request, model_name=self.model_name, device=self.device,
            seconds=time.perf_counter() - self._start, samples=samples, xt_frames=xt, x0_frames=x0,
            log_prob=_stack(self._log_prob[:n], self.request.batch),
            guidance_norm=_stack(self._guidance_norm[:n], self.request.batch),
            noise_level=np.asarray(self.noise[:n], dtype=np.float32), completed=completed,
        )


def _stack(rows: list[np.ndarray | None], batch: int) -> np.ndarray | None:
    """(steps, B) float32 with NaN rows where a step has no value; None if no step has one."""
    if all(r is None for r in rows):
        return None
    empty = np.full(batch, np.nan, dtype=np.float32)
    return np.stack([empty if r is None else r.astype(np.float32) for r in rows])
