"""PNGs with a run's settings embedded, written atomically, and reading the settings back. No Qt, no torch.

The app and the CLI (`python -m core sample --out x.png`) write the same record, so File › Open
run or PNG accepts either. A PNG carries one text chunk, `guidance-studio`, holding JSON:
{"format", "app_version", "model", "device", "seconds", "completed", "created" (local time, readable),
"timestamp" (seconds since the epoch), "sample_index", "request": SamplingRequest.to_dict()} plus,
when a run file was saved beside it (`core.runs`), "run_file": its name, so that reopening the PNG
shows the whole run. PNGs of prompt models also carry the `parameters` chunk of the wider Stable
Diffusion ecosystem (`core.infotext`).
"""
from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, PngImagePlugin

from .fileio import atomic_write

if TYPE_CHECKING:
    from .requests import SamplingRequest

CHUNK_KEY = "guidance-studio"
FORMAT_VERSION = 1


def app_version() -> str:
    """The installed distribution's version, or a marker when running from a source tree."""
    try:
        return metadata.version("guidance-studio")
    except metadata.PackageNotFoundError:
        return "source"


def run_metadata(model: str, request: SamplingRequest, *, device: str = "", seconds: float = 0.0,
                 completed: bool = True, sample_index: int | None = None, created: float | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The JSON-able record embedded in every PNG of a run (`extra` keys are added as they are)."""
    created = time.time() if created is None else float(created)
    return {
        "format": FORMAT_VERSION,
        "app_version": app_version(),
        "model": model,
        "device": device,
        "seconds": round(float(seconds), 4),
        "completed": bool(completed),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(created)),
        "timestamp": round(created, 3),
        "sample_index": sample_index,
        "request": request.to_dict(),
        **extra,
    }


def read_text_chunks(path: str | Path) -> dict[str, str]:
    """The text chunks of an image (key → text); ValueError for a missing or unreadable file."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return {str(k): str(v) for k, v in (getattr(img, "text", {}) or {}).items()}
    except FileNotFoundError:
        raise ValueError(f"No such file: {path}.") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error… for damaged files
        raise ValueError(f"{path.name} is not a readable image ({_first_line(exc)}).") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The embedded record of a PNG written by `write_png`; ValueError for any other file."""
    path = Path(path)
    text = read_text_chunks(path)
    if CHUNK_KEY not in text:
        raise ValueError(f"{path.name} holds no Guidance Studio settings (it was not saved by this app).")
    try:
        data = json.loads(text[CHUNK_KEY])
    except (ValueError, RecursionError):
        raise ValueError(f"The settings embedded in {path.name} are damaged (not valid JSON).") from None
    if not isinstance(data, dict) or "request" not in data or "model" not in data:
        raise ValueError(f"The settings embedded in {path.name} are incomplete.")
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_settings(path: str | Path) -> tuple[str, SamplingRequest]:
    """(model name, request) embedded in a PNG saved by this app or the CLI; ValueError otherwise."""
    from .requests import SamplingRequest

    data = read_metadata(path)
    try:
        request = SamplingRequest.from_dict(data["request"])
    except ValueError as exc:
        raise ValueError(f"The settings embedded in {Path(path).name} are not valid: {exc}") from None
    if not isinstance(data["model"], str):
        raise ValueError(f"The settings embedded in {Path(path).name} do not name their model.")
    return data["model"], request


def write_png(path: str | Path, picture: np.ndarray, meta: dict[str, Any] | None = None,
              parameters: str | None = None) -> Path:
    """Write an (H, W, 3) uint8 picture as PNG, with `meta` as our JSON text chunk and `parameters` as the
    `parameters` chunk other Stable Diffusion tools read (`core.infotext`), atomically."""
    info = PngImagePlugin.PngInfo()
    if meta is not None:
        info.add_text(CHUNK_KEY, json.dumps(meta, sort_keys=True))
    if parameters is not None:
        from .infotext import CHUNK_KEY as PARAMETERS_KEY

        info.add_text(PARAMETERS_KEY, parameters)
    img = Image.fromarray(np.ascontiguousarray(picture))
    return atomic_write(path, lambda fh: img.save(fh, format="PNG", pnginfo=info))
