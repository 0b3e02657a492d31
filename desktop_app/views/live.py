"""Live views: x_t and x̂0 side by side (image grids or 2-D scatter plots), a step scrubber, play/pause.

The panes only paint what they are given; `LiveViews` picks the frame to show: the newest one while
following a run, or the scrubbed step read from the trajectory (any object with `len()` and
`frame(i)` returning a `trajectory.Frame`-like record with `xt` and `x0`).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .captions import CAPTIONS
from .point_cloud import PointCloudItem, cache_axes

XT_TITLE = CAPTIONS["xt"].titled("x<sub>t</sub> &nbsp;noisy sample")
X0_TITLE = CAPTIONS["x0"].titled("x̂<sub>0</sub> &nbsp;predicted from x<sub>t</sub>")
EXACT_DECODE_TIP = ("Decode x̂0 with the model's VAE at every step of the next run. Otherwise x_t and x̂0 are "
                    "previewed through a fast latent→RGB map, and x̂0 is decoded for the frames on screen within "
                    "7 % of the run's time; the final image is always fully decoded.")
POINT_RANGE = 2.0  # the 2-D panes show [−2, 2]² (the built-in data lie within ±1.5; the narrow side of a pane)


class FrameSource(Protocol):
    def __len__(self) -> int: ...
    def frame(self, index: int) -> Any: ...


class ImagePane(pg.GraphicsLayoutWidget):
    """A titled uint8 RGB picture (H, W, 3), aspect locked, pan/zoom with the mouse."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground("w")
        self.title = self.addLabel(title, color="#333", size="11pt")
        self.nextRow()
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.image: np.ndarray | None = None

    def show_image(self, image: np.ndarray | None) -> None:
        """Paint `image` (H, W, 3) uint8; None clears the pane."""
        shape_changed = self.image is None or image is None or image.shape != self.image.shape
        self.image = image
        if image is None:
            self.item.clear()
            return
        self.item.setImage(image, autoLevels=False, levels=(0, 255))
        if shape_changed:
            self.view.autoRange(padding=0.02)


class PointPane(pg.PlotWidget):
    """A titled 2-D scatter: a faint data backdrop plus the current point cloud, coloured by class."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.setTitle(title, color="#333", size="11pt")
        self.setAspectLocked(True)
        self.setRange(xRange=(-POINT_RANGE, POINT_RANGE), yRange=(-POINT_RANGE, POINT_RANGE), padding=0)
        self.disableAutoRange()
        self.setMenuEnabled(False)
        cache_axes(self.getPlotItem())
        self.backdrop = PointCloudItem(size=3.0)
        # The backdrop changes only with the model: cache its rendering, so painting a new frame of
        # the cloud blits it instead of redrawing thousands of points.
        self.backdrop.setCacheMode(self.backdrop.CacheMode.DeviceCoordinateCache)
        self.cloud = PointCloudItem(size=3.5)
        self.addItem(self.backdrop)
        self.addItem(self.cloud)
        self.points: np.ndarray | None = None
        self.colors: np.ndarray | None = None

    def set_backdrop(self, points: np.ndarray | None, colors: np.ndarray | None = None) -> None:
        """The data distribution (N, 2), drawn faint; colors (N, 3) uint8 per point or None (grey)."""
        if points is not None:
            finite = np.isfinite(points).all(axis=1)
            points = points[finite]
            colors = None if colors is None else np.asarray(colors)[finite]
        self.backdrop.set_points(points, colors, alpha=40)

    def set_colors(self, colors: np.ndarray | None) -> None:
        """Colours of the cloud's points: (B, 3) uint8, one RGB for all (3,), or None (dark grey)."""
        if colors is not None and np.ndim(colors) == 2 and len(np.unique(colors, axis=0)) == 1:
            colors = np.asarray(colors)[0]
        self.colors = None if colors is None else np.asarray(colors)

    def show_points(self, points: np.ndarray | None) -> None:
        """Paint the cloud (B, 2); None clears it."""
        self.points = points
        colors = self.colors
        if points is not None and colors is not None and colors.ndim == 2 and len(colors) != len(points):
            colors = colors[0]
        self.cloud.set_points(points, colors)


class LiveViews(QWidget):
    """x_t and x̂0 panes, the scrubber and play/pause. `shown_index` is the step on screen."""

    step_shown = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.source: FrameSource | None = None
        self.shown_index = -1
        self.following = True
        self.points_mode = True
        self.image_panes = (ImagePane(XT_TITLE), ImagePane(X0_TITLE))
        self.point_panes = (PointPane(XT_TITLE), PointPane(X0_TITLE))
        for pane, key in zip((*self.image_panes, *self.point_panes), ("xt", "x0", "xt", "x0")):
            pane.setToolTip(CAPTIONS[key].tooltip())
        self.point_panes[1].setXLink(self.point_panes[0])
        self.point_panes[1].setYLink(self.point_panes[0])
        self.image_panes[1].view.setXLink(self.image_panes[0].view)
        self.image_panes[1].view.setYLink(self.image_panes[0].view)
        self.stack = QStackedWidget()
        for panes in (self.point_panes, self.image_panes):
            page = QWidget()
            row = QHBoxLayout(page)
            row.setContentsMargins(0, 0, 0, 0)
            for pane in panes:
                row.addWidget(pane)
            self.stack.addWidget(page)

        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Replay the run as an animation")
        self.play_button.toggled.connect(self._on_play)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Drag to any step of the run")
        self.slider.valueChanged.connect(self._on_slider)
        self.step_label = QLabel("no run yet")
        self.step_label.setMinimumWidth(170)
        self.exact_decode_box = QCheckBox("Exact x̂0 every step")
        self.exact_decode_box.setToolTip(EXACT_DECODE_TIP)
        self.exact_decode_box.hide()  # latent models only (set_latent)
        self.banner = QLabel()  # always in the layout, so the panes keep their size when it says something
        self.banner.setFixedHeight(self.banner.fontMetrics().height() + 10)
        self.set_banner("")
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.step_label)
        controls.addWidget(self.exact_decode_box)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.stack, 1)
        layout.addLayout(controls)
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._tick)
        self._set_controls_enabled(False)

    # --- mode and colours ------------------------------------------------------------------------

    def set_latent(self, latent: bool) -> None:
        """Offer the exact-decode choice for latent models only (pixel models' x̂0 is exact anyway)."""
        self.exact_decode_box.setVisible(latent)

    def set_points_mode(self, points: bool) -> None:
        self.points_mode = points
        self.stack.setCurrentIndex(0 if points else 1)

    def set_backdrop(self, points: np.ndarray | None, colors: np.ndarray | None = None) -> None:
        for pane in self.point_panes:
            pane.set_backdrop(points, colors)

    def set_colors(self, colors: np.ndarray | None) -> None:
        for pane in self.point_panes:
            pane.set_colors(colors)

    def set_banner(self, text: str) -> None:
        """A line above the panes saying what is on screen (e.g. "Reopened run #3 from …"); "" clears it."""
        self.banner.setText(text)
        self.banner.setStyleSheet("background: #fff3c4; color: #5a4500; padding: 2px 8px; border-radius: 3px;"
                                  if text else "")

    # --- runs ------------------------------------------------------------------------------------

    def begin(self, source: FrameSource, num_steps: int) -> None:
        """A new run: follow its newest frame; the slider spans steps 0..num_steps."""
        self.play_button.setChecked(False)
        self.source = source
        self.following = True
        self.shown_index = -1
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self._num_steps = num_steps
        self._set_controls_enabled(True)
        self.clear()

    def reset(self) -> None:
        """No run on screen (another model was loaded): empty panes, scrubber and replay disabled."""
        self.set_banner("")
        self.play_button.setChecked(False)
        self.source = None
        self.shown_index = -1
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        self.step_label.setText("no run yet")
        self._set_controls_enabled(False)
        self.clear()

    def clear(self) -> None:
        for pane in self.image_panes:
            pane.show_image(None)
        for pane in self.point_panes:
            pane.show_points(None)

    def new_frame(self, frame: Any) -> None:
        """The newest frame of the running run: extend the slider; show it when following."""
        newest = frame.index
        at_end = self.slider.value() == self.slider.maximum()
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(self.slider.maximum(), newest))
        if self.following and at_end:
            self.slider.setValue(newest)
        self.slider.blockSignals(False)
        if self.following and at_end:
            self._show(frame)

    def finish(self, num_frames: int) -> None:
        """The run ended with `num_frames` frames: show the last one unless the user scrubbed away."""
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(0, num_frames - 1))
        if self.following:
            self.slider.setValue(num_frames - 1)
        self.slider.blockSignals(False)
        self.show_step(self.slider.value())

    def show_step(self, index: int) -> None:
        """Show recorded step `index` from the source (scrubbing, replay)."""
        if self.source is None or not 0 <= index < len(self.source):
            return
        self._show(self.source.frame(index))

    def _show(self, frame: Any) -> None:
        self.shown_index = frame.index
        if self.points_mode:
            self.point_panes[0].show_points(frame.xt)
            self.point_panes[1].show_points(frame.x0)
        else:
            self.image_panes[0].show_image(frame.xt)
            blank = None if frame.x0 is None else frame.x0
            self.image_panes[1].show_image(blank)
        t = "" if frame.timestep is None else f", t = {frame.timestep}"
        self.step_label.setText(f"step {frame.index} / {frame.num_steps}{t}")
        self.step_shown.emit(frame.index)

    def _on_slider(self, value: int) -> None:
        self.following = value == self.slider.maximum()
        self.show_step(value)

    # --- replay ----------------------------------------------------------------------------------

    def _on_play(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self._timer.start()
        else:
            self._timer.stop()

    def _tick(self) -> None:
        top = self.slider.maximum()
        stride = max(1, top // 120)  # a whole run replays in about four seconds
        value = min(self.slider.value() + stride, top)
        self.slider.setValue(value)
        if value >= top:
            self.play_button.setChecked(False)

    def _set_controls_enabled(self, enabled: bool) -> None:
        self.slider.setEnabled(enabled)
        self.play_button.setEnabled(enabled)
