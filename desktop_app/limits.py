"""The range of every numeric setting, in one place.

The panels take their spin-box ranges and tooltips from here, and every setting that comes back from
elsewhere (a reopened PNG or library run, the settings file of the last session) is checked against the
same limits, so nothing reaches the window that its controls could not have produced. Qt-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limit:
    """A closed range [low, high] for one setting; `name` as the user reads it ("The seed")."""

    name: str
    low: float
    high: float
    integer: bool = False
    decimals: int = 2

    def describe(self) -> str:
        """The range as shown in tooltips: "0 to 2147483647", "−1.00 to 100.00"."""
        return f"{self._number(self.low)} to {self._number(self.high)}"

    def _number(self, value: float) -> str:
        text = str(int(value)) if self.integer else f"{value:.{self.decimals}f}"
        return text.replace("-", "−")

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed (a sentence), or None when it is."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{self.name} must be a number, not {_short(value)}."
        if self.integer and not (isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())):
            return f"{self.name} must be a whole number, not {_short(value)}."
        if not (math.isfinite(value) and self.low <= value <= self.high):
            return f"{self.name} must be from {self.describe()}, not {_short(value)}."
        return None

    def check(self, value: Any) -> int | float:
        """`value` as an int (integer limits) or float; ValueError with `problem`'s sentence otherwise."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return int(value) if self.integer else float(value)


def _short(value: Any, width: int = 24) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = "a huge number"
    return text if len(text) <= width else f"{text[:width]}…"


SEED = Limit("The seed", 0, 2**31 - 1, integer=True)  # the seed box holds a 32-bit int
BATCH_POINTS = Limit("The batch of a 2-D model", 1, 100_000, integer=True)
BATCH_IMAGES = Limit("The batch of an image model", 1, 1_000, integer=True)
ETA = Limit("η", 0.0, 1.0)
SCALE = Limit("The classifier scale s", 0.0, 1000.0)
WEIGHT = Limit("The CFG weight w", -1.0, 100.0)
GAMMA = Limit("The CFG strength γ", WEIGHT.low + 1.0, WEIGHT.high + 1.0)  # γ = 1 + w
WINDOW_START = Limit("The start of the guidance window", 0.0, 0.99)
WINDOW_END = Limit("The end of the guidance window", 0.01, 1.0)
CLASS_INDEX = Limit("The target class", 0, 1_000_000, integer=True)

# Settings field → its limit (desktop_app.session.Settings).
SETTINGS = {
    "seed": SEED, "batch_points": BATCH_POINTS, "batch_images": BATCH_IMAGES, "eta": ETA, "scale": SCALE,
    "weight": WEIGHT, "window_start": WINDOW_START, "window_end": WINDOW_END, "class_index": CLASS_INDEX,
}


def batch_limit(points: bool | None) -> Limit:
    """The batch limit of a 2-D model (points=True) or an image model; the larger one when unknown."""
    if points is None:
        return max(BATCH_POINTS, BATCH_IMAGES, key=lambda limit: limit.high)
    return BATCH_POINTS if points else BATCH_IMAGES
