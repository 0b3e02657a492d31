"""A run as a record: settings, outcome and every step's previews, and its file (`.run.npz`). No torch.

`RunResult` is what a finished, stopped or reopened run is everywhere in the studio and the CLI.
Its per-step data are named tracks (index = step, 0 = the initial noise), so new per-step views add
a track by name and it is saved and reopened with no change here.

The run file is a compressed `.npz` (NumPy's zip of `.npy` arrays, read with `allow_pickle=False`,
so opening one never runs code):
  meta            0-d str: JSON of `pngmeta.run_metadata` plus num_steps and data_shape
  samples         (B, *data_shape) float32: the last step reached (images decoded for latent models)
  labels          (B,) int64 target class per sample, only when the run had targets
  track/<name>    one track stacked over the steps reached: (steps, ...)
  mask/<name>     (steps,) bool, only for tracks some steps lack (those rows are zeros)
`python -m core sample --out run.npz` writes the same file (samples and labels are the keys it has
always written; it adds its own, such as x_T), so the app opens a CLI run as a run.
"""
from __future__ import annotations

import json
import time
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .fileio import atomic_write
from .pngmeta import run_metadata

if TYPE_CHECKING:
    from .requests import SamplingRequest

RUN_SUFFIX = ".run.npz"
# Bytes of uint8 image previews (all image tracks together) one run file may hold before they are
# shrunk further: keeps a 4-image 256×256 run of 250 steps under 60 MB on disk.
PREVIEW_BUDGET = 48 * 2**20
MAX_FILE_BYTES = 4 * 2**30  # a run file that would unpack to more than this is refused as damaged

# The tracks every recorded run has (`core.recording.Recorder`); others are added by name.
XT, X0, TIMESTEP, NOISE, ELAPSED, PROB, NORM = ("xt", "x0", "timestep", "noise_level", "elapsed", "prob",
                                               "guidance_norm")
X0_DECODED = "x0_decoded"  # latent runs: x̂0 decoded by the VAE where it was paid for (`core.latent_preview`)


@dataclass(frozen=True, eq=False)
class RunResult:
    """One run: what was asked, what happened, and every step it reached.

    samples: (B, *data_shape) float32 in model space, the last step reached.
    tracks: name → per-step values (a list, or an array whose first axis is the step), None where a
      step has none. Standard tracks (`core.recording`):
        xt, x0       previews of x_t and x̂0: images (B, h, w, C) uint8, C = 1 or 3, downscaled for
                     large images; 2-D models (B, 2) float16. x0 is None at step 0.
        timestep     the network's t (None at step 0); noise_level √(1−ᾱ_t) of x_t; elapsed: seconds
                     from the start to this step
        prob         mean classifier p(y | x_t) of the target (None where not computed)
        guidance_norm  mean ‖Δε‖ over the batch (None when unguided)
    num_steps: the denoising steps the run was set to take; len(result) − 1 were reached.
    completed: False when it was stopped early. created: seconds since the epoch.
    """

    request: SamplingRequest
    model_name: str
    device: str
    seconds: float
    samples: np.ndarray
    tracks: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    num_steps: int = 0
    completed: bool = True
    created: float = field(default_factory=time.time)

    @property
    def is_points(self) -> bool:
        return self.samples.ndim == 2

    def __len__(self) -> int:
        """Steps recorded (the initial noise counts as one); 0 for a run without a trajectory."""
        for name in (NOISE, XT):
            if name in self.tracks:
                return len(self.tracks[name])
        return 0

    def track(self, name: str) -> Sequence[Any]:
        """The per-step values of one track (empty when the run has none)."""
        return self.tracks.get(name, ())

    def labels(self) -> np.ndarray | None:
        """(B,) int64 target class of each sample, or None when unconditional."""
        labels = self.request.labels()
        return None if labels is None else np.asarray(labels[: len(self.samples)], dtype=np.int64)


# --- the run file --------------------------------------------------------------------------------

def _is_preview(value: Any) -> bool:
    """An image preview of one step: (B, h, w, C) uint8 (what the run file may shrink)."""
    return isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 4


def _stack(values: Sequence[Any], shrink: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-step values → (steps, ...) array and a (steps,) presence mask (None when every step has one).
    Image previews are shrunk by `shrink` first, step by step (no full-size copy of the track)."""
    present = np.array([v is not None for v in values], dtype=bool)
    if not present.any():
        raise ValueError("empty track")
    rows = [None if v is None else shrink_images(v, shrink) if _is_preview(v) else np.asarray(v) for v in values]
    first = next(r for r in rows if r is not None)
    if first.dtype.kind in "fc" and first.dtype.itemsize > 4 and first.ndim == 0:
        first = first.astype(np.float32)  # python floats: per-step curves are float32 on disk
    blank = np.zeros_like(first)
    rows = [blank if r is None else r.astype(first.dtype, copy=False) for r in rows]
    shapes = {r.shape for r in rows}
    if len(shapes) != 1:
        raise ValueError(f"steps of different shapes {sorted(shapes)}")
    stacked = np.empty((len(rows), *first.shape), first.dtype)
    for i, row in enumerate(rows):  # a step at a time, not one np.stack: see `write_npz`
        stacked[i] = row
    return stacked, (None if present.all() else present)


def shrink_images(images: np.ndarray, factor: int) -> np.ndarray:
    """(..., h, w, C) uint8 previews → (..., ⌈h/f⌉, ⌈w/f⌉, C) by averaging f×f blocks (edges repeated)."""
    if factor <= 1:
        return images
    h, w = images.shape[-3:-1]
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        pad = [(0, 0)] * (images.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
        images = np.pad(images, pad, mode="edge")
    total = np.zeros(images[..., ::factor, ::factor, :].shape, np.uint32)
    for dy in range(factor):  # f² strided adds: far faster than numpy's reduction over a 6-axis view
        for dx in range(factor):
            total += images[..., dy::factor, dx::factor, :]
    area = factor * factor
    return ((total + area // 2) // area).astype(np.uint8)


def preview_factor(tracks: Mapping[str, Sequence[Any]], budget: int = PREVIEW_BUDGET) -> int:
    """The smallest shrink factor that brings every image preview of the run within `budget` bytes."""
    shapes = [v.shape for values in tracks.values() for v in values if _is_preview(v)]

    def size(f: int) -> int:
        return sum(b * -(-h // f) * -(-w // f) * c for b, h, w, c in shapes)

    factor = 1
    while size(factor) > budget:
        factor += 1
    return factor


def run_arrays(result: RunResult, budget: int = PREVIEW_BUDGET, extra: Mapping[str, np.ndarray] | None = None,
               **meta: Any) -> dict[str, np.ndarray]:
    """Everything the run file holds, as named arrays: `extra` arrays are kept under their own names
    (the CLI's x_T and latents), `meta` keys are added to the JSON record."""
    tracks: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    shrink = preview_factor(result.tracks, budget)
    for name, values in result.tracks.items():
        values = list(values)
        if not values or all(v is None for v in values):
            continue
        try:
            tracks[name], mask = _stack(values, shrink)
        except ValueError as exc:
            raise ValueError(f"The run's track {name!r} cannot be saved: {exc}.") from None
        if mask is not None:
            masks[name] = mask
    record = run_metadata(result.model_name, result.request, device=result.device, seconds=result.seconds,
                          completed=result.completed, created=result.created, num_steps=int(result.num_steps),
                          data_shape=list(result.samples.shape[1:]), **meta)
    out = {**(extra or {}), "meta": np.array(json.dumps(record, sort_keys=True)),
           "samples": np.ascontiguousarray(result.samples, dtype=np.float32)}
    labels = result.labels()
    if labels is not None:
        out["labels"] = labels
    out.update({f"track/{k}": v for k, v in tracks.items()})
    out.update({f"mask/{k}": v for k, v in masks.items()})
    return out


def write_run(path: str | Path, result: RunResult, budget: int = PREVIEW_BUDGET,
              extra: Mapping[str, np.ndarray] | None = None, **meta: Any) -> Path:
    """Write the run file atomically (SaveError on failure; nothing half-written is left)."""
    arrays = run_arrays(result, budget, extra, **meta)
    return atomic_write(path, lambda fh: write_npz(fh, arrays))


WRITE_PIECE = 1 << 20  # bytes of an array handed to zlib at a time


def write_npz(file: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """What `np.savez_compressed(file, **arrays)` writes (a zip of `.npy` files, deflated), written so that
    no step holds the interpreter lock for long: each array goes to zlib straight from its memory, a
    WRITE_PIECE at a time (zlib and the CRC let the lock go while they work). np.savez_compressed copies
    each array whole into a bytes object first, and zlib then copies its whole output once more, both with
    the lock held: the library writes run files on a thread beside the GUI, which waited up to 20-30 ms for
    the lock at the end of a 2-D run (bench/ui_latency.py). Arrays holding Python objects are refused."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in arrays.items():
            array = np.asarray(array)
            array = array if array.flags.c_contiguous else array.copy(order="C")  # (keeps a 0-d array 0-d)
            if array.dtype.hasobject:
                raise ValueError(f"{name!r} holds Python objects, which a run file does not keep.")
            data = array.reshape(-1).view(np.uint8)
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(array))
                for start in range(0, len(data), WRITE_PIECE):
                    member.write(memoryview(data[start:start + WRITE_PIECE]))


def read_run_meta(path: str | Path) -> dict[str, Any]:
    """Only the JSON record of a run file (cheap); ValueError when it is not one."""
    with _open(path) as data:
        return _meta(data, Path(path).name)


def read_run(path: str | Path) -> RunResult:
    """A run file back as a RunResult; ValueError with a readable sentence for anything else."""
    from .requests import SamplingRequest

    path = Path(path)
    name = path.name
    with _open(path) as data:
        meta = _meta(data, name)
        try:
            request = SamplingRequest.from_dict(meta["request"])
            samples = np.asarray(data["samples"], dtype=np.float32)
            keys = set(data.files)
            tracks = {k[len("track/"):]: data[k] for k in keys if k.startswith("track/")}
            masks = {k[len("mask/"):]: data[k] for k in keys if k.startswith("mask/")}
        except _DAMAGE as exc:
            raise ValueError(f"{name} is damaged: {exc}") from None
    lengths = {len(a) for a in tracks.values() if a.ndim >= 1}
    if samples.ndim < 2 or len(lengths) > 1 or any(a.ndim == 0 for a in tracks.values()):
        raise ValueError(f"{name} is damaged: its arrays do not fit together.")
    steps = lengths.pop() if lengths else 0
    lists: dict[str, list[Any]] = {}
    for key, array in tracks.items():
        mask = masks.get(key)
        if mask is not None and (mask.dtype != bool or mask.shape != (steps,)):
            raise ValueError(f"{name} is damaged: the mask of {key!r} does not fit its track.")
        lists[key] = [array[i] if mask is None or mask[i] else None for i in range(steps)]
    try:
        return RunResult(request, str(meta["model"]), str(meta.get("device", "")), float(meta.get("seconds", 0.0)),
                         samples, lists, num_steps=int(meta.get("num_steps", max(steps - 1, 0))),
                         completed=bool(meta.get("completed", True)),
                         created=float(meta.get("timestamp", path.stat().st_mtime)))
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"{name} is damaged: {exc}") from None


# What reading a damaged zip can raise: zlib.error for bad deflate data; zipfile's NotImplementedError for an
# unknown compression method and RuntimeError for an entry marked encrypted.
_DAMAGE = (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError,
           RuntimeError)


class _open:
    """np.load of a run file as a context manager, refusing damaged or oversized zips with ValueError."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self):
        name = self.path.name
        try:
            with zipfile.ZipFile(self.path) as zf:
                if sum(i.file_size for i in zf.infolist()) > MAX_FILE_BYTES:
                    raise ValueError(f"{name} is damaged: it claims more than {MAX_FILE_BYTES >> 30} GiB of data.")
            self.data = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise ValueError(f"No such file: {self.path}.") from None
        except _DAMAGE as exc:
            raise ValueError(f"{name} is not a run file ({exc}).") from None
        return self.data

    def __exit__(self, *exc: object) -> None:
        self.data.close()


def _meta(data: Any, name: str) -> dict[str, Any]:
    if "meta" not in data.files:
        raise ValueError(f"{name} holds no run settings (it is not a run file, or was written by an older version).")
    try:
        meta = json.loads(str(data["meta"]))
    except (*_DAMAGE, RecursionError) as exc:
        raise ValueError(f"The settings in {name} are damaged ({exc}).") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("request"), dict) or "model" not in meta:
        raise ValueError(f"The settings in {name} are incomplete.")
    return meta
