"""What differs between runs, and a wipe overlay of two pictures. Qt-free."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

# Settings shown first, in this order; any others follow alphabetically.
_ORDER = ("model", "sampler", "steps", "eta", "guidance.kind", "guidance.scale", "guidance.weight",
          "guidance.window", "label", "seed", "batch", "clip", "dynamic_percentile", "variance",
          "device", "completed")


def _canonical(value: Any) -> Any:
    """Lists and tuples compare equal; 2 and 2.0 compare equal."""
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, bool):
        return ("bool", value)  # True must not equal 1
    if isinstance(value, (int, float)):
        return float(value)
    return value


def effective_settings(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flat settings mapping with the values that cannot affect the run set to None.

    s only matters for classifier guidance, w only for classifier-free, the window only with
    guidance, η only for DDIM, the variance only for DDPM, the percentile only for dynamic clipping.
    So two runs that differ in an unused value are not reported as different.
    """
    out = dict(flat)
    kind = out.get("guidance.kind")
    unused = set()
    if kind not in ("classifier", "both"):
        unused.add("guidance.scale")
    if kind not in ("cfg", "both"):
        unused.add("guidance.weight")
    if kind == "none":
        unused.add("guidance.window")
    if out.get("sampler") == "ddpm":
        unused.add("eta")
    elif out.get("sampler") == "ddim":
        unused.add("variance")
    if out.get("clip") != "dynamic":
        unused.add("dynamic_percentile")
    for key in unused & out.keys():
        out[key] = None
    return out


def setting_keys(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of keys of several flat settings mappings, in display order."""
    keys = set().union(*(s.keys() for s in settings)) if settings else set()
    known = [k for k in _ORDER if k in keys]
    return known + sorted(keys - set(known))


def differing_keys(settings: Sequence[Mapping[str, Any]]) -> set[str]:
    """The keys whose values are not the same in every mapping (a key missing somewhere differs)."""
    if len(settings) < 2:
        return set()
    missing = object()
    out = set()
    for key in setting_keys(settings):
        values = [_canonical(s[key]) if key in s else missing for s in settings]
        if any(v is missing for v in values) or any(v != values[0] for v in values[1:]):
            out.add(key)
    return out


# What each setting is called in words (the compare window's summary); others keep their key.
NAMES = {"model": "model", "sampler": "sampler", "steps": "steps", "eta": "DDIM η", "guidance.kind": "guidance",
         "guidance.scale": "classifier scale s", "guidance.weight": "CFG weight w",
         "guidance.window": "guidance window", "label": "target class", "seed": "seed", "batch": "batch",
         "clip": "x̂0 clipping", "dynamic_percentile": "dynamic-threshold percentile", "variance": "DDPM variance",
         "device": "device", "completed": "finished", "prompt": "prompt", "negative_prompt": "negative prompt",
         "width": "width", "height": "height"}


def describe_differences(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The differing settings in words, in display order: "CFG weight w: 0 → 3" for two runs,
    "seed: 0, 1, 5" for more. Empty when the runs share every setting."""
    differing = differing_keys(settings)
    out = []
    for key in setting_keys(settings):
        if key not in differing:
            continue
        values = [format_value(s[key]) if key in s else "(not set)" for s in settings]
        joined = " → ".join(values) if len(values) == 2 else ", ".join(values)
        out.append(f"{NAMES.get(key, key)}: {joined}")
    return out


def format_value(value: Any) -> str:
    """A setting as the compare table shows it."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return str(value)


def fit_to(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """Place (h, w, 3) uint8 in the top-left of a white (height, width, 3) canvas (cropping excess)."""
    out = np.full((height, width, 3), 255, np.uint8)
    h, w = min(height, picture.shape[0]), min(width, picture.shape[1])
    out[:h, :w] = picture[:h, :w]
    return out


def wipe(left: np.ndarray, right: np.ndarray, position: float, line: int = 2) -> np.ndarray:
    """Columns before `position` (a fraction of the width) from `left`, the rest from `right`.

    Both are (h, w, 3) uint8; the smaller is padded with white to the larger size. A divider `line`
    pixels wide marks the boundary: half black, half white, so it shows on any picture and is never
    taken for data of a class colour.
    """
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"The wipe position must lie in [0, 1], got {position}.")
    h = max(left.shape[0], right.shape[0])
    w = max(left.shape[1], right.shape[1])
    a, b = fit_to(left, h, w), fit_to(right, h, w)
    cut = int(round(position * w))
    out = b.copy()
    out[:, :cut] = a[:, :cut]
    if line > 0:
        lo, hi = max(0, cut - line // 2), min(w, cut + (line + 1) // 2)
        mid = (lo + hi + 1) // 2
        out[:, lo:mid] = 0
        out[:, mid:hi] = 255
    return out
