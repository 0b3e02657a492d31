"""What the views show of a run: one Frame per step, read from the run's named tracks. Qt-free.

`Frames(source)` reads any object with `tracks`, `num_steps`, `is_points` and `len()`: the worker's
`core.recording.Recorder` while a run samples (it appends, the GUI reads the steps already complete),
or a finished or reopened `core.runs.RunResult`. Frames of image runs are composed into one grid per
pane here, from the per-sample previews the tracks hold; a latent model's x̂0 is its VAE decode at the
steps that have one (`core.latent_preview`), and both panes show the decoded result at the last step.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.images import grid, rgb
from core.runs import ELAPSED, NOISE, NORM, PROB, TIMESTEP, X0, X0_DECODED, XT

CURVE_TRACKS = {"prob": PROB, "norm": NORM, "noise": NOISE}  # the per-step plots' curves: their tracks
STANDARD = {XT, X0, X0_DECODED, TIMESTEP, NOISE, ELAPSED, PROB, NORM}


@dataclass(frozen=True)
class Frame:
    """One step as the views show it.

    xt, x0: (H, W, 3) uint8 grids for images, (B, 2) float32 points for 2-D models; x0 is None at
    index 0. prob: mean classifier p(y | x_t) of the target (NaN when unknown); guidance_norm: mean
    ‖Δε‖ (NaN when unguided). elapsed: seconds from the run's start to this step. extras: the
    values of the run's other tracks at this step (None where a track has none), by track name.
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
    extras: Mapping[str, Any] = field(default_factory=dict)


def preview_grid(previews: np.ndarray) -> np.ndarray:
    """Per-sample previews (B, h, w, C) uint8 → one (H, W, 3) grid, about square, 2-px black gaps."""
    return grid(rgb(np.asarray(previews)), ncols=math.ceil(math.sqrt(len(previews))), pad=2)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


class Frames:
    """The frames of one run (any thread), from a live Recorder or a RunResult."""

    def __init__(self, source: Any):
        self.source = source

    @property
    def is_points(self) -> bool:
        return self.source.is_points

    @property
    def num_steps(self) -> int:
        return self.source.num_steps

    def __len__(self) -> int:
        return len(self.source)

    def _picture(self, value: Any) -> np.ndarray | None:
        if value is None:
            return None
        if self.is_points:
            return np.asarray(value, dtype=np.float32)
        return preview_grid(value)

    def frame(self, index: int) -> Frame:
        """Recorded step `index` (0 ≤ index < len) as a Frame."""
        tracks = self.source.tracks
        at = {name: (values[index] if index < len(values) else None) for name, values in tracks.items()}
        timestep = at.get(TIMESTEP)
        decoded = at.get(X0_DECODED)  # a latent model's VAE-decoded x̂0 where it has one, else the fast preview
        x0 = self._picture(at.get(X0) if decoded is None else decoded)
        final = decoded is not None and index == self.num_steps  # the last step's decode is the result itself
        return Frame(
            index=index, num_steps=self.num_steps, timestep=None if timestep is None else int(timestep),
            xt=x0 if final else self._picture(at.get(XT)), x0=x0, prob=_number(at.get(PROB)),
            guidance_norm=_number(at.get(NORM)), noise_level=_number(at.get(NOISE)),
            elapsed=_number(at.get(ELAPSED)), extras={k: v for k, v in at.items() if k not in STANDARD},
        )

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prob, guidance_norm, noise_level) over the steps recorded, float64 with NaN where unknown."""
        prob, norm, noise = (self.curve(key) for key in CURVE_TRACKS)
        return prob, norm, noise

    def curve(self, key: str) -> np.ndarray:
        """One of `curves` by the per-step plots' name for it: prob, norm or noise."""
        return self._numbers(CURVE_TRACKS[key])

    def _numbers(self, name: str) -> np.ndarray:
        values = self.source.tracks.get(name, ())[: len(self)]
        return np.array([_number(v) for v in values], dtype=np.float64)

    def elapsed(self) -> np.ndarray:
        """(steps,) seconds from the start to each step (NaN where unknown): what real-time replay follows."""
        return self._numbers(ELAPSED)


class StillFrames:
    """A saved picture with no trajectory behind it, as a one-frame source: an older library entry or
    a PNG whose run file is missing shows its final image this way."""

    is_points = False
    num_steps = 0

    def __init__(self, picture: np.ndarray):
        self.picture = np.asarray(picture, dtype=np.uint8)

    def __len__(self) -> int:
        return 1

    def frame(self, index: int) -> Frame:
        return Frame(0, 0, None, self.picture, None, math.nan, math.nan, math.nan, math.nan)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        empty = np.array([], dtype=np.float64)
        return empty, empty, empty
