"""Training data. `DATASETS` maps a --data name to a loader returning (x (N, …) float32, labels (N,)
long, class names); image loaders return images scaled to [−1, 1]."""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from .image_folder import image_folder_dataset
from .mnist import mnist_dataset
from .toy2d import gmm_dataset, scurve_dataset

Dataset = tuple[Tensor, Tensor, tuple[str, ...]]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "gmm": gmm_dataset,
    "scurve": scurve_dataset,
    "mnist": mnist_dataset,  # mnist (train split), mnist:test, mnist:all
    "folder": image_folder_dataset,  # folder:PATH, one sub-folder per class
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """A dataset by name; `folder:PATH` style names are resolved by the loader registered for the prefix."""
    key, _, arg = name.partition(":")
    if key not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}.")
    return DATASETS[key](arg, **kwargs) if arg else DATASETS[key](**kwargs)
