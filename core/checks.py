"""Checking values that come from files and users: each refusal is a ValueError with one sentence that
names the value (shortened), so a bad record is reported, never a crash deep inside the engine."""
from __future__ import annotations

import math
from typing import Any


def finite(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """`value` as a finite float in [low, high] (None: unbounded); ValueError (a sentence) for anything
    else, text and booleans included."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {shown(value)}.")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_bounds(low, high)}, got {value:g}.")
    return value


def whole(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high] (None: unbounded); integral floats (as JSON may give them) are accepted."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {shown(value)}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_bounds(low, high)}, got {shown(value)}.")
    return value


def _bounds(low: float | None, high: float | None) -> str:
    def num(v: float | None) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    return f"at least {num(low)}" if high is None else f"at most {num(high)}" if low is None else \
        f"from {num(low)} to {num(high)}"


def text(name: str, value: Any) -> str:
    """`value` if it is a string; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {shown(value)}.")
    return value


def shown(value: Any, width: int = 40) -> str:
    """A short rendering of a bad value for a message (never the whole of a huge one)."""
    try:
        rendered = repr(value)
    except (RecursionError, ValueError):  # a structure nested too deep, an int too long to print
        rendered = f"a {type(value).__name__}"
    return rendered if len(rendered) <= width else f"{rendered[:width]}…"
