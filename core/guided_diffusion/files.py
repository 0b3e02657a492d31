"""Reading third-party weight files: `.pt` through torch's weights-only unpickler, raw `.safetensors`.

A `.pt` file is a pickle. `torch.load(weights_only=True)` only rebuilds tensors and plain containers;
a pickle that asks for anything else (a function to call, a class to build) is refused here with a
message saying so, before any of it runs.
"""
from __future__ import annotations

import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoints import FORMAT, CheckpointError, read_header, read_tensors

_WRAPPERS = ("state_dict", "model", "ema", "model_state_dict")
_READ_ERRORS = (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError, TypeError,
                AttributeError, struct.error, zipfile.BadZipFile, pickle.UnpicklingError, UnicodeDecodeError)


def is_bundle(path: str | Path) -> bool:
    """Is `path` one of our own `.safetensors` bundles (config in its metadata)?"""
    if Path(path).suffix != ".safetensors":
        return False
    try:
        return read_header(path).metadata.get("format") == FORMAT
    except CheckpointError:
        return False


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a `.pt` or raw `.safetensors` checkpoint, keyed like the network's state dict.

    Unwraps {"state_dict": …}-style containers and a DataParallel `module.` prefix.
    Raises CheckpointError for refused, damaged or non-weight files.
    """
    path = _existing(path)
    if path.suffix == ".safetensors":
        return read_tensors(path)
    return _tensors(_unpickle(path), path.name)


def read_shapes(path: str | Path) -> dict[str, Tensor]:
    """Like `read_state_dict`, but shapes only (tensors on the "meta" device): quick even for large
    files, since only the header (`.safetensors`) or the pickle without its storages (`.pt`) is read."""
    path = _existing(path)
    if path.suffix == ".safetensors":
        return {k: torch.empty(spec.shape, dtype=spec.dtype, device="meta")
                for k, spec in read_header(path).tensors.items()}
    state = _tensors(_unpickle(path, mmap=True), path.name)
    return {k: torch.empty(v.shape, device="meta") for k, v in state.items()}


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No such checkpoint file: {path}.")
    return path


def _unpickle(path: Path, mmap: bool = False) -> object:
    """torch.load(weights_only=True) with readable errors; `mmap` maps the storages instead of reading
    them (zip-format files; older files are read whole)."""
    if mmap and not zipfile.is_zipfile(path):
        mmap = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not for the user
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        wanted = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if wanted is not None:
            raise CheckpointError(
                f"{path.name}: refused. The file holds Python objects that would run code when opened "
                f"(it asks for {wanted.group(1)}), not just weights; only plain weight files are opened."
            ) from None
        raise CheckpointError(f"{path.name}: the file is damaged or not a PyTorch checkpoint ({exc}).") from None
    except _READ_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path.name}: the file is damaged, truncated or not a PyTorch checkpoint "
                              f"({detail}).") from None
    return obj


def _tensors(obj: object, name: str) -> dict[str, Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict) and not all(isinstance(v, Tensor) for v in obj.values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{name}: the file does not hold a network's weights (a dictionary of tensors).")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state
