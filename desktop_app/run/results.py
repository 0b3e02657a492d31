"""A finished (or stopped) run, as the app keeps it: settings, final samples, trajectory frames."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # importing core loads torch; the window must open before that
    from core import SamplingRequest


@dataclass(frozen=True, eq=False)
class RunResult:
    """Everything save, the library and compare need from one run.

    samples: (B, *data_shape) float32 in model space, the last step reached.
    xt_frames / x0_frames: one uint8 preview per step reached (index 0 = initial noise; its x̂0
    frame is blank). For image models each frame is an (H, W, 3) grid over the batch; for 2-D
    models each is the (B, 2) float32 point cloud. log_prob / guidance_norm: (steps, B) float32 or None.
    completed: False when the run was stopped before its last step.
    """

    request: SamplingRequest
    model_name: str
    device: str
    seconds: float
    samples: np.ndarray
    xt_frames: list[np.ndarray] = field(default_factory=list)
    x0_frames: list[np.ndarray] = field(default_factory=list)
    log_prob: np.ndarray | None = None
    guidance_norm: np.ndarray | None = None
    noise_level: np.ndarray | None = None
    completed: bool = True

    @property
    def is_points(self) -> bool:
        return self.samples.ndim == 2
