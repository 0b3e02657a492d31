"""Exact pictures of a latent model's run: its x̂0 decoded by the VAE for the frames a viewer shows, within
a time budget, and the final images always fully decoded. No Qt.

A latent run's x_t and x̂0 are previewed every step through the bundle's fast `preview` (a linear
latent→RGB map). The VAE decode is far dearer (on a GPU about as much as a denoising step of a 512×512
Stable Diffusion), so `ExactPreviews` decodes x̂0 only
- at the last step (the final image, always: that is the run's result),
- at every step when asked (`exact=True`, the "exact decode every step" choice), and otherwise
- at steps whose frame will be shown (`shown()`), while the decoding done so far, with this one, stays
  within `fraction` (4 %) of the sampler's own time so far. On CUDA a decode slows the run by up to 1.5×
  its own measured time (an H200, SD-1.5 shapes: two decodes of 21 ms each added 66 ms to a 0.77 s run),
  so 4 % keeps the run within 6 %, and with the 3 % of the diagnostics budget (core.diagnostics) the
  sampler is never slowed by more than 10 %.
A decode's cost is known only once measured; the latest is remembered per bundle and latent shape (per
sample), so a model's first run shows exact pictures only at its end and later runs show them as the
budget allows.

`ExactPreviews.track` is a `core.recording.Recorder` extra: it records the track X0_DECODED (per-sample
uint8 previews, None at steps not decoded), which the views show in place of the linear x̂0 preview and
run files keep. A decode is queued behind its step without waiting for the device, and timed on it (CUDA
events, `core.device.Stopwatch`): its cost is counted once the recorder completes the step, and until then
the expected cost stands in for it.
"""
from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .device import Stopwatch
from .images import pixel_tensor
from .recording import Later
from .samplers import Step

DECODE_FRACTION = 0.04
MAX_SIDE = 512  # the decoded grid's longest side, as the recorder's previews (core.recording.MAX_SIDE)
TRACK_MEMORY = 256 * 2**20  # bytes the decoded previews of one run may take in memory

# Seconds per sample of one decode, by bundle and latent shape (C, h, w): measured, kept while the bundle lives.
_COSTS: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], float]] = weakref.WeakKeyDictionary()


def decode_stride(batch: int, height: int, width: int, steps: int) -> int:
    """The pixel stride that keeps a batch's decoded grid near MAX_SIDE and a whole run of decoded
    previews (one per step at most) within TRACK_MEMORY."""
    cols = math.ceil(math.sqrt(batch))
    view = math.ceil(max(height, width) * cols / MAX_SIDE)
    memory = math.ceil(math.sqrt((steps + 1) * batch * height * width * 3 / TRACK_MEMORY))
    return max(1, view, memory)


class ExactPreviews:
    """Decides and makes the VAE-decoded x̂0 previews of one run of a latent `bundle` (see the module).

    shown(): whether the frame of the step just computed will be painted (None: always).
    clock: the wall clock in seconds; tests pass a fake one.
    """

    def __init__(self, bundle: Any, *, exact: bool = False, shown: Callable[[], bool] | None = None,
                 fraction: float = DECODE_FRACTION, clock: Callable[[], float] = time.perf_counter):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"The decode budget is a fraction of the run's time in (0, 1], not {fraction}.")
        self.bundle = bundle
        self.exact = exact
        self.shown = shown
        self.fraction = fraction
        self.clock = clock
        self.spent = 0.0  # seconds of decoding so far, the final decode excluded
        self._expected = 0.0  # the expected seconds of paid decodes queued but not yet timed
        self.decoded_steps: list[int] = []
        self.final: torch.Tensor | None = None  # the last step's images (B, 3, H, W) in [−1, 1]
        self._start: float | None = None
        self._last_x: torch.Tensor | None = None
        self._stride: int | None = None

    # --- cost ------------------------------------------------------------------------------------

    def _key(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape[1:])

    def cost(self, x: torch.Tensor) -> float | None:
        """The expected seconds of decoding `x` (B latents), or None before this bundle and shape were measured."""
        per_sample = _COSTS.get(self.bundle, {}).get(self._key(x))
        return None if per_sample is None else per_sample * x.shape[0]

    def _measured(self, x: torch.Tensor, seconds: float) -> None:
        """Remember the latest cost (not the least: a budget planned on a lucky fast decode is overrun)."""
        _COSTS.setdefault(self.bundle, {})[self._key(x)] = seconds / x.shape[0]

    # --- decisions ----------------------------------------------------------------------------------

    def wants(self, step: Step) -> bool:
        """Whether step `step` gets a decoded x̂0 (call once per step, in order)."""
        now = self.clock()
        if self._start is None:
            self._start = now
        if step.x0 is None:
            return False
        if step.is_last or self.exact:
            return True
        if self.shown is not None and not self.shown():
            return False
        cost = self.cost(step.x0)
        spent = self.spent + self._expected
        sampling = now - self._start - spent  # the sampler's own time so far
        return cost is not None and spent + cost <= self.fraction * sampling

    # --- the recorder extra ---------------------------------------------------------------------------

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, Stopwatch]:
        """`x` decoded (queued on its device) and the stopwatch around it."""
        watch = Stopwatch(x.device, self.clock)
        watch.start()
        with torch.inference_mode():
            images = self.bundle.decode(x).float()
        watch.stop()
        return images, watch

    def _preview(self, images: torch.Tensor, num_steps: int) -> torch.Tensor:
        if self._stride is None:
            b, _, h, w = images.shape
            self._stride = decode_stride(b, h, w, num_steps)
        if self._stride > 1:
            images = F.avg_pool2d(images, self._stride, ceil_mode=True)
        return pixel_tensor(images)

    def track(self, step: Step, recorder: Any = None) -> Later | None:
        """The X0_DECODED value of `step`: (B, h, w, 3) uint8 of the VAE-decoded x̂0 (of the final sample
        at the last step) once the recorder completes the step, or None when this step is not decoded."""
        self._last_x = step.x
        if not self.wants(step):
            return None
        x = step.x if step.is_last else step.x0
        paid = not step.is_last
        expected = (self.cost(x) or 0.0) if paid else 0.0
        self._expected += expected
        images, watch = self._decode(x)
        if step.is_last:
            self.final = images
        self.decoded_steps.append(step.index)

        def timed(preview: np.ndarray) -> np.ndarray:  # the step is complete: so is its decode
            seconds = watch.seconds()
            self._measured(x, seconds)
            self._expected -= expected
            if paid:
                self.spent += seconds
            return preview

        return Later(self._preview(images, step.num_steps), timed)

    def final_images(self) -> np.ndarray:
        """The run's result as images (B, 3, H, W) float32 in [−1, 1]: the full decode of the last sample
        reached (decoded now if the run stopped before its last step)."""
        if self.final is None:
            if self._last_x is None:
                raise ValueError("The run stopped before its first step; there is nothing to decode.")
            self.final, watch = self._decode(self._last_x)
            self._measured(self._last_x, watch.seconds())
        return self.final.detach().cpu().numpy().astype(np.float32)
