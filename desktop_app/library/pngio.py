"""A run's pictures: the grid (or 2-D scatter), one PNG per sample, thumbnails; saving them. Qt-free.

Every PNG carries the run's settings (`core.pngmeta`: the record the CLI writes too), so File ›
Open settings from PNG restores them; writes are atomic, so a failed save leaves nothing behind.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from core.fileio import SaveError
from core.infotext import format_infotext
from core.pngmeta import run_metadata, write_png
from core.runs import RUN_SUFFIX, write_run

if TYPE_CHECKING:
    from core import SamplingRequest
    from core.runs import RunResult


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

def settings_metadata(result: RunResult, sample_index: int | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON-able record embedded in every PNG of `result` (`core.pngmeta.run_metadata`)."""
    return run_metadata(result.model_name, result.request, device=result.device, seconds=result.seconds,
                        completed=result.completed, sample_index=sample_index, created=result.created, **extra)


# --- saving a run --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedFiles:
    """The files one save wrote: the grid (or scatter) picture, one PNG per sample (images only), and
    the run file with every step (None for a run without a trajectory)."""

    grid: Path
    samples: tuple[Path, ...] = ()
    run: Path | None = None

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.grid, *self.samples, *((self.run,) if self.run is not None else ()))


def default_stem(result: RunResult) -> str:
    """A readable file stem: time, model, guidance and seed (the library prefixes its run id)."""
    g = result.request.guidance
    detail = {"none": "none", "classifier": f"s{g.scale:g}", "cfg": f"w{g.weight:g}",
              "both": f"w{g.weight:g}-s{g.scale:g}"}[g.kind]
    safe_model = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in result.model_name)
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{safe_model}_{detail}_seed{result.request.seed}"


def _parameters(result: RunResult, samples: np.ndarray | None, index: int) -> str | None:
    """The `parameters` text other Stable Diffusion tools read, for prompt models' images (else None)."""
    if samples is None or result.request.prompt is None:
        return None
    height, width = samples.shape[1:3]
    return format_infotext(result.request, result.model_name, width, height, index)


def save_result(result: RunResult, folder: str | Path, stem: str | None = None,
                per_sample: bool = True, with_run: bool = True, **meta: Any) -> SavedFiles:
    """Save the grid PNG, (for image models) one PNG per sample and the run file into `folder`.

    Every PNG carries the full settings and the name of the run file beside it (`<stem>.run.npz`,
    written when the run has a trajectory and `with_run`), so reopening the PNG shows the whole run;
    those of prompt models also carry the `parameters` text other Stable Diffusion tools read.
    `meta` keys are added to every file's embedded record (the library adds its run id). If any write
    fails, the files this call already wrote are removed again and SaveError is raised.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaveError(f"Could not create the folder {folder}: {exc.strerror or exc}.") from exc
    stem = stem or default_stem(result)
    run_name = f"{stem}{RUN_SUFFIX}" if with_run and len(result) else None
    extra = {**meta, "run_file": run_name} if run_name else dict(meta)
    written: list[Path] = []
    samples = None if result.is_points else sample_images(result)
    try:
        written.append(write_png(folder / f"{stem}.png", result_picture(result), settings_metadata(result, **extra),
                                 _parameters(result, samples, 0)))
        if per_sample and samples is not None:
            for i, picture in enumerate(samples):
                record = settings_metadata(result, sample_index=i, **extra)
                written.append(write_png(folder / f"{stem}_sample{i:03d}.png", picture, record,
                                         _parameters(result, samples, i)))
        run = write_run(folder / run_name, result, **meta) if run_name else None
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return SavedFiles(written[0], tuple(written[1:]), run)
