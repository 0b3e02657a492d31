"""What the compare window draws for a run at a step: a picture fitted to its box, or (2-D runs) a scatter
plot on axes shared with the other runs; and the wipe of two runs.

The 2-D views are the live window's `PointPane`s (vector dots, the same colours and axes as live), not
raster thumbnails. The wipe's divider is a dark dashed line (a picture's is black and white), so it is
never taken for a class colour.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QSlider, QStackedWidget, QVBoxLayout, QWidget

from ..qtpix import fitted, to_pixmap
from ..views.live import SAMPLE_ALPHA, SAMPLE_EDGE, PointPane
from ..views.point_cloud import PointCloudItem
from .diff import wipe

DIVIDER = (70, 70, 70)


class PictureLabel(QLabel):
    """Shows a pixmap scaled to fit the label, re-scaled when the label is resized."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(96, 96)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._source = None

    def set_source(self, pixmap) -> None:
        self._source = pixmap
        self._rescale()

    def source(self):
        return self._source

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._source is not None and not self._source.isNull():
            self.setPixmap(fitted(self._source, self.size() - QSize(4, 4)))


def _points_colors(points: np.ndarray, colors: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    """The colours of the points kept by `keep`: per-point colours follow the mask, one colour stays."""
    if colors is None or np.ndim(colors) == 1:
        return colors
    return np.asarray(colors)[keep] if len(colors) == len(points) else np.asarray(colors)[0]


class RunView(QStackedWidget):
    """One run's pane: a fitted picture (image runs, saved pictures) or a 2-D scatter plot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.picture = PictureLabel()
        self.points = PointPane("")
        self.points.setMinimumSize(160, 160)
        self.addWidget(self.picture)
        self.addWidget(self.points)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API): a plot's own hint would scroll the columns
        return QSize(160, 160)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(320, 320)

    @property
    def showing_points(self) -> bool:
        return self.currentWidget() is self.points

    def show_picture(self, picture: np.ndarray | None) -> None:
        self.setCurrentWidget(self.picture)
        if picture is None:
            self.picture.setText("no picture")
        else:
            self.picture.set_source(to_pixmap(picture))

    def show_points(self, points: np.ndarray | None, colors: np.ndarray | None) -> None:
        self.setCurrentWidget(self.points)
        self.points.set_colors(colors)
        self.points.show_points(points)


class WipeView(QWidget):
    """Two runs overlaid: left of the slider from A, right of it from B. Pictures are cut at a column
    of pixels; 2-D runs at an x position of the plane (A's points left of it, B's right of it)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.picture = PictureLabel()
        self.points = PointPane("")
        self.cloud_b = PointCloudItem(size=self.points.cloud.size, edge=SAMPLE_EDGE)
        self.points.addItem(self.cloud_b)
        self.divider = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(DIVIDER, width=2,
                                                                            style=Qt.PenStyle.DashLine))
        self.points.addItem(self.divider)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.picture)
        self.stack.addWidget(self.points)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 1000)
        self.slider.setValue(500)
        self.slider.setToolTip("Drag to move the boundary between the two runs")
        self.caption = QLabel()
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.slider)
        self._a = self._b = None
        self._colors: tuple[Any, Any] = (None, None)
        self.slider.valueChanged.connect(lambda _v: self._update())
        self.points.getViewBox().sigXRangeChanged.connect(lambda *_: self.showing_points and self._update())

    def set_pictures(self, a: np.ndarray, b: np.ndarray, left: str, right: str) -> None:
        self._a, self._b = a, b
        self.stack.setCurrentWidget(self.picture)
        self.caption.setText(f"◀ {left}   |   {right} ▶")
        self._update()

    def set_points(self, a: np.ndarray | None, b: np.ndarray | None, colors: tuple[Any, Any], left: str,
                   right: str) -> None:
        """Two point clouds (B, 2) and their colours (as `PointPane.set_colors` takes them)."""
        self._a, self._b, self._colors = a, b, colors
        self.stack.setCurrentWidget(self.points)
        self.caption.setText(f"◀ {left}   |   {right} ▶")
        self._update()

    @property
    def showing_points(self) -> bool:
        return self.stack.currentWidget() is self.points

    def position(self) -> float:
        return self.slider.value() / 1000.0

    def boundary(self) -> float:
        """The x position of the plane where a 2-D wipe cuts: the slider's place across the visible plane."""
        low, high = self.points.getViewBox().viewRange()[0]
        return low + (high - low) * self.position()

    def composite(self) -> np.ndarray | None:
        """The wiped picture (picture mode), or None."""
        if self.showing_points or self._a is None or self._b is None:
            return None
        return wipe(self._a, self._b, self.position())

    def _update(self) -> None:
        if not self.showing_points:
            picture = self.composite()
            if picture is not None:
                self.picture.set_source(to_pixmap(picture))
            return
        cut = self.boundary()
        self.divider.setValue(cut)
        for points, colors, cloud, side in ((self._a, self._colors[0], self.points.cloud, -1),
                                            (self._b, self._colors[1], self.cloud_b, 1)):
            if points is None:
                cloud.set_points(None)
                continue
            keep = (points[:, 0] < cut) if side < 0 else (points[:, 0] >= cut)
            cloud.set_points(points[keep], _points_colors(points, colors, keep), alpha=SAMPLE_ALPHA)
