"""uint8 pictures and PNG bytes → Qt pixmaps (shared by the gallery, compare and sweep views)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap


def to_pixmap(picture: np.ndarray) -> QPixmap:
    """(H, W, 3) uint8 RGB → QPixmap (the pixels are copied)."""
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    h, w = picture.shape[:2]
    image = QImage(picture.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


def png_pixmap(data: bytes | None) -> QPixmap:
    """PNG bytes → QPixmap (a null pixmap for None or undecodable bytes)."""
    pixmap = QPixmap()
    if data:
        pixmap.loadFromData(data, "PNG")
    return pixmap


def read_picture(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8; ValueError if it cannot be read."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read the picture {Path(path).name}: {exc}") from None


def fitted(pixmap: QPixmap, size: QSize) -> QPixmap:
    """Scale to fit `size` keeping the aspect; small pictures are enlarged without blurring."""
    if pixmap.isNull() or size.width() < 2 or size.height() < 2:
        return pixmap
    enlarge = pixmap.width() < size.width() and pixmap.height() < size.height()
    mode = Qt.TransformationMode.FastTransformation if enlarge else Qt.TransformationMode.SmoothTransformation
    return pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)
