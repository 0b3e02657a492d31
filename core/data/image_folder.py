"""`--data folder:PATH`: the user's own images, one sub-folder per class (class name = folder name).

Images are resized to `size`×`size` (bilinear), scaled to [−1, 1]; they become grey (1 channel) when
every image is greyscale, RGB (3 channels) otherwise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ValueError(f"Image folder {str(root)!r} does not exist or is not a folder.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{str(root)!r} has no sub-folders; put each class's images in a folder of its own.")
    return folders


def image_folder_dataset(path: str, num: int | None = None, seed: int = 0, size: int = 32,
                         channels: int | None = None) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """(x (N, C, size, size) in [−1, 1], labels (N,) long, class names in sorted folder order).

    `channels` forces 1 or 3; `num` keeps a random subset (chosen by `seed`). Files that are not images
    are skipped; an empty class folder or an unreadable image file is an error that names the file.
    """
    if channels not in (None, 1, 3):
        raise ValueError("An image folder can be read with 1 (grey) or 3 (RGB) channels.")
    folders = _class_folders(Path(path).expanduser())
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise ValueError(f"Class folder {str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        files.extend((p, label) for p in found)
    if num is not None and num < len(files):
        keep = np.sort(np.random.default_rng(seed).choice(len(files), size=num, replace=False))
        files = [files[i] for i in keep]
    images = []
    for file, _ in files:
        try:
            with Image.open(file) as image:
                image.load()
                images.append(image.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"Cannot read image {str(file)!r}: {exc}.") from None
    if channels is None:
        channels = 1 if all(im.mode in GREY_MODES for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.float32)
              for im in images]
    x = torch.from_numpy(np.stack(arrays)).div(127.5).sub(1.0)
    x = x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return x.contiguous(), labels, tuple(f.name for f in folders)
