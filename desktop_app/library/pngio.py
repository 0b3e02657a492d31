"""Saving results as PNG with every setting embedded, atomically, and reading the settings back.

Qt-free. A saved PNG carries one text chunk, `guidance-studio`, holding JSON:
{"format", "app_version", "model", "device", "seconds", "completed", "created", "sample_index",
"request": SamplingRequest.to_dict()}. Files are written to a temporary file in the target folder
and then renamed over the target, so a failed write never leaves a half-written picture behind.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

import numpy as np
from PIL import Image, PngImagePlugin

if TYPE_CHECKING:  # core loads torch; it is imported on first use so the window opens before that
    from core import SamplingRequest

    from ..run.results import RunResult

CHUNK_KEY = "guidance-studio"
FORMAT_VERSION = 1


class SaveError(OSError):
    """Writing a file failed (unwritable folder, full disk); nothing half-written was left behind."""


def app_version() -> str:
    """The installed distribution's version, or a marker when running from a source tree."""
    try:
        return metadata.version("guidance-studio")
    except metadata.PackageNotFoundError:
        return "source"


# --- pictures of a result ------------------------------------------------------------------------

def sample_images(result: RunResult) -> np.ndarray:
    """The final samples of an image model as (B, H, W, 3) uint8."""
    if result.is_points:
        raise ValueError("A 2-D model's samples are points; use result_picture for its scatter plot.")
    import torch

    from core.images import to_uint8

    return to_uint8(torch.from_numpy(np.ascontiguousarray(result.samples, dtype=np.float32)))


def points_picture(points: np.ndarray, request: SamplingRequest, size: int = 256,
                   extent: float = 2.0) -> np.ndarray:
    """A (B, 2) point cloud in [−extent, extent]² as a (size, size, 3) uint8 scatter with faint axes.

    Points are coloured by their target class (black when unconditional).
    """
    from core.images import points_image

    labels = request.labels()
    picture = points_image(points, None if labels is None else np.asarray(labels), size=size, extent=extent)
    background = (picture == 255).all(axis=-1)
    guides = np.zeros_like(background)
    mid = (size - 1) // 2
    guides[mid, :] = guides[:, mid] = True  # the axes through the origin
    guides[[0, -1], :] = guides[:, [0, -1]] = True  # the frame of the plotted square
    picture[background & guides] = (215, 215, 215)
    return picture


def result_picture(result: RunResult, size: int = 256) -> np.ndarray:
    """The run's final samples as one (H, W, 3) uint8 picture: the image grid, or the 2-D scatter."""
    if result.is_points:
        return points_picture(result.samples, result.request, size)
    from core.images import grid

    return grid(sample_images(result))


def thumbnail_png(picture: np.ndarray, size: int = 128) -> bytes:
    """(H, W, 3) uint8 → PNG bytes of a copy that fits in size × size (aspect kept)."""
    img = Image.fromarray(picture)
    img.thumbnail((size, size), Image.Resampling.LANCZOS if min(img.size) > size else Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --- settings metadata ---------------------------------------------------------------------------

def settings_metadata(result: RunResult, sample_index: int | None = None) -> dict[str, Any]:
    """The JSON-able record embedded in every PNG of `result`."""
    return {
        "format": FORMAT_VERSION,
        "app_version": app_version(),
        "model": result.model_name,
        "device": result.device,
        "seconds": round(float(result.seconds), 4),
        "completed": bool(result.completed),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sample_index": sample_index,
        "request": result.request.to_dict(),
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The embedded record of a PNG written by `save_result`; ValueError for any other file."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            text = dict(getattr(img, "text", {}) or {})
    except FileNotFoundError:
        raise ValueError(f"No such file: {path}.") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path.name} is not a readable image ({exc}).") from None
    if CHUNK_KEY not in text:
        raise ValueError(f"{path.name} holds no Guidance Studio settings (it was not saved by this app).")
    try:
        data = json.loads(text[CHUNK_KEY])
    except json.JSONDecodeError:
        raise ValueError(f"The settings embedded in {path.name} are damaged (not valid JSON).") from None
    if not isinstance(data, dict) or "request" not in data or "model" not in data:
        raise ValueError(f"The settings embedded in {path.name} are incomplete.")
    return data


def read_settings(path: str | Path) -> tuple[str, SamplingRequest]:
    """(model name, request) embedded in a PNG saved by this app; ValueError otherwise."""
    from core import SamplingRequest

    data = read_metadata(path)
    try:
        request = SamplingRequest.from_dict(data["request"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"The settings embedded in {Path(path).name} are not valid: {exc}") from None
    return str(data["model"]), request


# --- atomic writing ------------------------------------------------------------------------------

def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path`.

    On any failure the temporary file is removed, `path` is untouched, and SaveError says why.
    """
    path = Path(path)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise SaveError(f"Could not save {path.name} in {path.parent}: {exc.strerror or exc}.") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def write_png(path: str | Path, picture: np.ndarray, meta: dict[str, Any] | None = None) -> Path:
    """Write an (H, W, 3) uint8 picture as PNG, with `meta` as our JSON text chunk, atomically."""
    info = PngImagePlugin.PngInfo()
    if meta is not None:
        info.add_text(CHUNK_KEY, json.dumps(meta, sort_keys=True))
    img = Image.fromarray(np.ascontiguousarray(picture))
    return atomic_write(path, lambda fh: img.save(fh, format="PNG", pnginfo=info))


# --- saving a run --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedFiles:
    """The files one save wrote: the grid (or scatter) picture, then one PNG per sample (images only)."""

    grid: Path
    samples: tuple[Path, ...] = ()

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.grid, *self.samples)


def default_stem(result: RunResult) -> str:
    """A readable, unique-enough file stem: time, model, guidance and seed."""
    g = result.request.guidance
    detail = {"none": "none", "classifier": f"s{g.scale:g}", "cfg": f"w{g.weight:g}",
              "both": f"w{g.weight:g}-s{g.scale:g}"}[g.kind]
    safe_model = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in result.model_name)
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{safe_model}_{detail}_seed{result.request.seed}"


def save_result(result: RunResult, folder: str | Path, stem: str | None = None,
                per_sample: bool = True) -> SavedFiles:
    """Save the grid PNG and (for image models) one PNG per sample into `folder`.

    Every file carries the full settings. If any write fails, the files this call already wrote
    are removed again and SaveError is raised.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaveError(f"Could not create the folder {folder}: {exc.strerror or exc}.") from exc
    stem = stem or default_stem(result)
    written: list[Path] = []
    try:
        written.append(write_png(folder / f"{stem}.png", result_picture(result), settings_metadata(result)))
        if per_sample and not result.is_points:
            for i, picture in enumerate(sample_images(result)):
                meta = settings_metadata(result, sample_index=i)
                written.append(write_png(folder / f"{stem}_sample{i:03d}.png", picture, meta))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return SavedFiles(written[0], tuple(written[1:]))
