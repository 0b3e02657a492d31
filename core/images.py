"""Model-space tensors → uint8 pictures: image grids, and 2-D point clouds rasterised as scatter plots."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported on use: grids and scatter plots need only numpy
    from torch import Tensor

# One colour per class (tab10-like), RGB.
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)


def pixel_tensor(x: Tensor) -> Tensor:
    """Images (B, C, H, W) in [−1, 1] → (B, H, W, C') uint8 on their own device, C' = 1 for grey (C < 3), else 3."""
    if x.dim() != 4:
        raise ValueError(f"Expected images of shape (B, C, H, W), got {tuple(x.shape)}.")
    import torch

    x = x[:, :1] if x.shape[1] < 3 else x[:, :3]
    values = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return values.permute(0, 2, 3, 1).contiguous()


def pixels(x: Tensor) -> np.ndarray:
    """Images (B, C, H, W) in [−1, 1] → (B, H, W, C') uint8 on the host (`pixel_tensor`)."""
    return pixel_tensor(x).cpu().numpy()


def rgb(pictures: np.ndarray) -> np.ndarray:
    """(…, C) uint8 with C = 1 or 3 → (…, 3): grey repeated to RGB."""
    return np.repeat(pictures, 3, axis=-1) if pictures.shape[-1] == 1 else pictures


def to_uint8(x: Tensor) -> np.ndarray:
    """Images (B, C, H, W) in [−1, 1] → (B, H, W, 3) uint8 (grey images are repeated to RGB)."""
    return rgb(pixels(x))


def grid(images: np.ndarray, ncols: int | None = None, pad: int = 2, fill: int = 0) -> np.ndarray:
    """(B, H, W, 3) uint8 → one (rows·(H+pad)+pad, cols·(W+pad)+pad, 3) picture, row-major."""
    b, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(b))
    nrows = math.ceil(b / ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y:y + h, x:x + w] = images[i]
    return out


def points_image(points: np.ndarray, labels: np.ndarray | None = None, size: int = 256,
                 extent: float = 2.0, radius: int = 1) -> np.ndarray:
    """Points (N, 2) in [−extent, extent]² → (size, size, 3) uint8 scatter on white, coloured by label."""
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    pts = np.asarray(points, dtype=np.float64)
    cols = np.round((pts[:, 0] + extent) / (2 * extent) * (size - 1)).astype(int)
    rows = np.round((extent - pts[:, 1]) / (2 * extent) * (size - 1)).astype(int)
    colors = PALETTE[np.asarray(labels) % len(PALETTE)] if labels is not None else np.zeros((len(pts), 3), np.uint8)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            r, c = rows + dy, cols + dx
            ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            img[r[ok], c[ok]] = colors[ok]
    return img
