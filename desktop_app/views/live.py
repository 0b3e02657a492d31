"""Live views: x_t and x̂0 side by side (image grids or 2-D scatter plots) and the step player.

The panes only paint what they are given; `LiveViews` picks the frame to show: the newest one while
following a run, or the scrubbed step read from the trajectory (any object with `len()` and
`frame(i)` returning a `trajectory.Frame`-like record with `xt` and `x0`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..tasks import Turns
from .captions import CAPTIONS
from .player import StepPlayer, step_text
from .point_cloud import AXIS_DRAWINGS_KEPT, PointCloudItem, cache_axes

XT_TITLE = CAPTIONS["xt"].titled("x<sub>t</sub> &nbsp;noisy sample")
X0_TITLE = CAPTIONS["x0"].titled("x̂<sub>0</sub> &nbsp;predicted from x<sub>t</sub>")
EXACT_DECODE_TIP = ("Decode x̂0 with the model's VAE at every step of the next run. Otherwise x_t and x̂0 are "
                    "previewed through a fast latent→RGB map, and x̂0 is decoded for the frames on screen within "
                    "4 % of the sampling time; the final image is always fully decoded.")
POINT_RANGE = 2.0  # the 2-D panes show [−2, 2]² (the built-in data lie within ±1.5; the narrow side of a pane)
# Half-widths the 2-D panes grow through when a run's samples leave the plane (x̂0 overshoots under strong guidance).
POINT_EXTENTS = (2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0)
AHEAD_DELAY_MS = 300  # the panes' size must hold this long before their planes are drawn ahead
EXTENT_QUANTILE = 0.98  # the share of samples the plane grows to hold (a few far outliers do not zoom it out)


class FrameSource(Protocol):
    def __len__(self) -> int: ...
    def frame(self, index: int) -> Any: ...


class PictureItem(pg.ImageItem):
    """An ImageItem for uint8 RGB pictures, painted from a 32-bit RGB copy (QImage.Format_RGB32).

    pyqtgraph hands Qt a 24-bit RGB888 image, which Qt's raster engine converts at every paint: 0.43 ms for a
    138×138 grid drawn at 420×420 here, against 0.07 ms for RGB32, which it blits. A live image run repaints
    up to seven panes a frame (x_t, x̂0, and the guidance maps' five)."""

    def __init__(self) -> None:
        super().__init__(axisOrder="row-major")
        self._rgb32: tuple[np.ndarray, QImage] | None = None  # the pixels and the QImage over them

    def setImage(self, image: np.ndarray | None = None, **kwargs: Any) -> None:
        self._rgb32 = None
        super().setImage(image, **kwargs)

    def clear(self) -> None:
        self._rgb32 = None
        super().clear()

    def paint(self, painter: QPainter, *args: Any) -> None:
        image = self.image
        if image is None:
            return
        if self._rgb32 is None:
            rgb = np.asarray(image, np.uint32).reshape(*image.shape[:2], -1)
            pixels = np.ascontiguousarray(0xFF000000 | rgb[..., 0] << 16 | rgb[..., 1 % rgb.shape[2]] << 8
                                          | rgb[..., 2 % rgb.shape[2]])
            h, w = pixels.shape
            self._rgb32 = pixels, QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_RGB32)
        h, w = image.shape[:2]
        painter.drawImage(QRectF(0, 0, w, h), self._rgb32[1])


class ImagePane(pg.GraphicsLayoutWidget):
    """A titled uint8 RGB picture (H, W, 3), aspect locked, pan/zoom with the mouse."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground("w")
        self.title = self.addLabel(title, color="#333", size="11pt")
        self.nextRow()
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = PictureItem()
        self.view.addItem(self.item)
        self.image: np.ndarray | None = None
        self._span: tuple[int, int] | None = None  # the (H, W) the picture covers in the view

    def show_image(self, image: np.ndarray | None, extent: tuple[int, int] | None = None) -> None:
        """Paint `image` (H, W, 3) uint8 over its own pixels, or stretched over `extent` (H, W) when given (a
        latent model's VAE-decoded picture shown where its latent preview was); None clears the pane. The view
        is fitted again only when what the picture covers changes."""
        self.image = image
        if image is None:
            self._span = None
            self.item.clear()
            return
        span = tuple(extent) if extent is not None else image.shape[:2]
        self.item.setImage(image, autoLevels=False, levels=(0, 255))
        if extent is not None:  # (after setImage: the stretch is worked out from the picture's own size)
            self.item.setRect(QRectF(0, 0, span[1], span[0]))
        if span != self._span:
            self._span = span
            self.view.autoRange(padding=0.02)


DATA_ALPHA = 110  # the training data: pale, small dots …
SAMPLE_ALPHA = 235  # … the samples: full colour, larger, with a dark rim, always on top
SAMPLE_EDGE = (30, 30, 30)
LEGEND_BRUSH = pg.mkBrush(255, 255, 255, 215)
LEGEND_PEN = pg.mkPen(200, 200, 200)


def class_colors(request: Any) -> np.ndarray | None:
    """(B, 3) uint8: each sample's target-class colour, or None when the run is unconditional."""
    from core.images import PALETTE

    labels = None if request is None else request.labels()
    return None if labels is None else PALETTE[np.asarray(labels) % len(PALETTE)]


def muted(colors: np.ndarray | None) -> np.ndarray:
    """Class colours washed two thirds of the way to white: the training data's, behind the samples'."""
    if colors is None:
        return np.array([175, 175, 175], np.uint8)
    return (np.asarray(colors, np.float32) * 0.35 + 255 * 0.65).round().astype(np.uint8)


def _legend_dot(rgb: tuple[int, int, int], alpha: int, size: float, edge: tuple[int, int, int] | None):
    return pg.ScatterPlotItem(size=size, brush=pg.mkBrush(*rgb, alpha),
                              pen=pg.mkPen(*edge) if edge is not None else pg.mkPen(None))


class PointPane(pg.PlotWidget):
    """A titled 2-D scatter: the training data, pale and labelled (`show_data` toggles it), under the
    current point cloud of samples, coloured by class with a dark rim so they stand out from it.
    `labelled=False` leaves the legend out (a pane beside one that has it). `plane_changed` when the app
    (not the mouse) moved the visible plane."""

    plane_changed = Signal()
    reshaped = Signal()  # shown, or resized

    def __init__(self, title: str, parent: QWidget | None = None, labelled: bool = True):
        super().__init__(parent, background="w")
        self.setTitle(title, color="#333", size="11pt")
        self.setAspectLocked(True)
        self.show_extent(POINT_RANGE)
        self.disableAutoRange()
        self.setMenuEnabled(False)
        cache_axes(self.getPlotItem(), kept=len(POINT_EXTENTS) + AXIS_DRAWINGS_KEPT)
        self.backdrop = PointCloudItem(size=3.0)
        # The backdrop changes only with the model: cache its rendering, so painting a new frame of
        # the cloud blits it instead of redrawing thousands of points.
        self.backdrop.setCacheMode(self.backdrop.CacheMode.DeviceCoordinateCache)
        self.backdrop.setZValue(-1)
        self.cloud = PointCloudItem(size=5.0, edge=SAMPLE_EDGE)
        self.addItem(self.backdrop)
        self.addItem(self.cloud)
        self.legend = self.addLegend(offset=(4, 4), labelTextColor="#555", labelTextSize="8pt",
                                     brush=LEGEND_BRUSH, pen=LEGEND_PEN)  # readable over arrows and points
        self.legend.addItem(_legend_dot(tuple(muted(None)), DATA_ALPHA + 60, 6, None), "training data")
        self.legend.addItem(_legend_dot((90, 90, 90), SAMPLE_ALPHA, 8, SAMPLE_EDGE), "samples")
        self.legend.setVisible(False)  # until there is training data to name
        self.labelled = labelled
        self.points: np.ndarray | None = None
        self.colors: np.ndarray | None = None
        self.outside = pg.TextItem(color="#8a5a00", anchor=(1, 0), fill=LEGEND_BRUSH)  # samples out of view
        self.outside.setZValue(20)
        self.outside.hide()
        self.addItem(self.outside, ignoreBounds=True)
        self.getViewBox().sigRangeChanged.connect(self._say_outside)

    def show_extent(self, extent: float) -> None:
        """Show the plane [−extent, extent]² (the narrow side of the pane)."""
        self.setRange(xRange=(-extent, extent), yRange=(-extent, extent), padding=0)
        self.plane_changed.emit()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.reshaped.emit()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.reshaped.emit()

    def planes_ahead(self) -> list[Callable[[], None]]:
        """Parts that each draw one axis over one plane of POINT_EXTENTS ahead of time, at the pane's size now
        (where the plane is centred, as `show_extent` centres it): the first move to a plane then takes kept
        drawings, instead of laying out two axes' labels (3–4 ms an axis) in the paint of a live frame."""
        ranges = {name: self.getAxis(name).range for name in ("bottom", "left")}
        shown = min((hi - lo) / 2 for lo, hi in ranges.values())
        if not all(np.isclose(lo, -hi) for lo, hi in ranges.values()) or not shown > 0:
            return []  # (moved by the mouse: the app's planes cannot be told from here)
        return [functools.partial(self.getAxis(name).draw_ahead, (lo * extent / shown, hi * extent / shown))
                for extent in POINT_EXTENTS for name, (lo, hi) in ranges.items()]

    def _say_outside(self, *_args: Any) -> None:
        """Say how many samples lie beyond the visible plane (x̂0 overshoots under strong guidance), and
        where: an empty-looking pane would otherwise read as 'no samples'."""
        text = outside_text(self.points, self.viewRange()) if self.cloud.isVisible() else ""
        self.outside.setVisible(bool(text))
        if text:
            (_, x1), (_, y1) = self.viewRange()
            self.outside.setText(text)
            self.outside.setPos(x1, y1)

    def set_backdrop(self, points: np.ndarray | None, colors: np.ndarray | None = None) -> None:
        """The training data (N, 2), drawn pale; colors (N, 3) uint8 by class (washed out) or None (grey)."""
        if points is not None:
            finite = np.isfinite(points).all(axis=1)
            points = points[finite]
            colors = None if colors is None else np.asarray(colors)[finite]
        self.backdrop.set_points(points, None if points is None else muted(colors), alpha=DATA_ALPHA)
        self.legend.setVisible(self.labelled and points is not None and self.backdrop.isVisible())

    def show_data(self, visible: bool) -> None:
        """Show or hide the training data (and its legend)."""
        self.backdrop.setVisible(visible)
        self.legend.setVisible(self.labelled and visible and bool(self.backdrop.group_colors))

    def set_colors(self, colors: np.ndarray | None) -> None:
        """Colours of the cloud's points: (B, 3) uint8, one RGB for all (3,), or None (dark grey)."""
        colors = None if colors is None else np.asarray(colors)
        if colors is not None and colors.ndim == 2 and len(colors) and (colors == colors[0]).all():
            colors = colors[0]  # one colour for all (found by a comparison: np.unique sorted every row at Start)
        self.colors = colors

    def show_points(self, points: np.ndarray | None) -> None:
        """Paint the cloud (B, 2); None clears it."""
        self.points = points
        colors = self.colors
        if points is not None and colors is not None and colors.ndim == 2 and len(colors) != len(points):
            colors = colors[0]
        self.cloud.set_points(points, colors, alpha=SAMPLE_ALPHA)
        self._say_outside()


OUT_OF_VIEW = 0.25  # a pane says so when at least this share of its samples lies beyond the view
SIDE_ARROWS = {"left": "◀", "right": "▶", "below": "▼", "above": "▲"}


def extent_for(points: np.ndarray | None, at_least: float) -> float:
    """The smallest of POINT_EXTENTS, not below `at_least`, whose plane holds EXTENT_QUANTILE of the finite
    points' coordinates (the largest when none does)."""
    if points is None or not len(points):
        return at_least
    coords = np.abs(np.asarray(points, np.float64))
    coords = coords[np.isfinite(coords).all(axis=1)]
    if not len(coords):
        return at_least
    need = float(np.quantile(coords.max(axis=1), EXTENT_QUANTILE))
    return next((e for e in POINT_EXTENTS if e >= max(need, at_least)), POINT_EXTENTS[-1])


def outside_text(points: np.ndarray | None, view: Any) -> str:
    """'' unless at least OUT_OF_VIEW of the finite points lie beyond the view ((x0, x1), (y0, y1)); then
    e.g. '▲ 998 of 1000 samples out of view', with an arrow for each side a quarter of them are beyond."""
    if points is None or not len(points):
        return ""
    pts = np.asarray(points, np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    (x0, x1), (y0, y1) = view
    sides = {"left": pts[:, 0] < x0, "right": pts[:, 0] > x1, "below": pts[:, 1] < y0, "above": pts[:, 1] > y1}
    count = int(np.logical_or.reduce(list(sides.values())).sum())
    if not count or count < OUT_OF_VIEW * len(pts):
        return ""
    arrows = "".join(SIDE_ARROWS[name] for name, mask in sides.items() if mask.sum() >= count / 4)
    return f"{arrows} {count} of {len(points)} samples out of view"


class SquarePair(QWidget):
    """Two widgets side by side, each as wide as the space allows and at most TALLEST times as tall, centred:
    the 2-D panes show the plane at one scale on both axes, so a much taller pane would only add empty plane."""

    SPACING = 6
    TALLEST = 1.3

    def __init__(self, first: QWidget, second: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.pair = (first, second)
        for widget in self.pair:
            widget.setParent(self)

    def pane_size(self) -> tuple[int, int]:
        """(width, height) of each pane in the space there is."""
        width = max(1, min((self.width() - self.SPACING) // 2, self.height()))
        return width, max(1, min(self.height(), round(self.TALLEST * width)))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        width, height = self.pane_size()
        left = (self.width() - 2 * width - self.SPACING) // 2
        top = (self.height() - height) // 2
        for k, widget in enumerate(self.pair):
            widget.setGeometry(left + k * (width + self.SPACING), top, width, height)


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
        self.point_panes = (PointPane(XT_TITLE, labelled=False), PointPane(X0_TITLE))  # x_t: arrows, no legend
        for pane, key in zip((*self.image_panes, *self.point_panes), ("xt", "x0", "xt", "x0")):
            pane.setToolTip(CAPTIONS[key].tooltip())
        self.extent = POINT_RANGE  # the 2-D panes' half-width, fitted to the samples on screen (_fit_plane)
        self.paints = Turns(self)  # the 2-D panes' repaints, each in a turn of its own (_paint_in_later_turns)
        self._announce_due = False  # a part of `paints` is to emit step_shown
        self.ahead = Turns(self, after=self.paints)  # their axes drawn over every plane (_draw_planes_ahead)
        self._ahead_timer = QTimer(self)
        self._ahead_timer.setSingleShot(True)
        self._ahead_timer.setInterval(AHEAD_DELAY_MS)
        self._ahead_timer.timeout.connect(self._draw_planes_ahead)
        for pane in self.point_panes:
            pane.reshaped.connect(self._ahead_timer.start)
        self.point_panes[1].setXLink(self.point_panes[0])
        self.point_panes[1].setYLink(self.point_panes[0])
        self.image_panes[1].view.setXLink(self.image_panes[0].view)
        self.image_panes[1].view.setYLink(self.image_panes[0].view)
        self.stack = QStackedWidget()
        self.stack.addWidget(SquarePair(*self.point_panes))
        page = QWidget()
        row = QHBoxLayout(page)
        row.setContentsMargins(0, 0, 0, 0)
        for pane in self.image_panes:
            row.addWidget(pane)
        self.stack.addWidget(page)

        self.player = StepPlayer()
        self.player.index_changed.connect(self._on_index)
        player = self.player  # its widgets under the names the views have always had
        self.slider, self.play_button, self.step_label = player.slider, player.play_button, player.step_label
        self.exact_decode_box = QCheckBox("VAE-decode x₀ every step")
        self.exact_decode_box.setToolTip(EXACT_DECODE_TIP)
        self.exact_decode_box.hide()  # latent models only (set_latent)
        self.data_box = QCheckBox("Training data")
        self.data_box.setChecked(True)
        self.data_box.setToolTip("Show the model's training data, pale, behind the samples (2-D models)")
        self.data_box.toggled.connect(lambda on: [pane.show_data(on) for pane in self.point_panes])
        self.banner = QLabel()  # always in the layout, so the panes keep their size when it says something
        self.banner.setFixedHeight(self.banner.fontMetrics().height() + 10)
        self.set_banner("")
        controls = QHBoxLayout()
        controls.addWidget(self.player, 1)
        self.player.add_beside_scrubber(self.exact_decode_box)
        controls.addWidget(self.data_box, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.stack, 1)
        layout.addLayout(controls)

    # --- mode and colours ------------------------------------------------------------------------

    def set_latent(self, latent: bool) -> None:
        """Offer the exact-decode choice for latent models only (pixel models' x̂0 is exact anyway)."""
        self.exact_decode_box.setVisible(latent)

    def set_points_mode(self, points: bool) -> None:
        self.points_mode = points
        self.stack.setCurrentIndex(0 if points else 1)
        self.data_box.setVisible(points)

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
        """A new run: follow its newest frame; the scrubber grows with the steps recorded. The panes and
        their plane stay as they are until the run's first frame (its x_T, at once) replaces them: cleared
        first, both were repainted for nothing in Start's own turn."""
        self.player.play_button.setChecked(False)
        self.source = source
        self.following = True
        self.shown_index = -1
        self.player.set_count(1, follow=True)
        self.player.set_elapsed(None)
        self._num_steps = num_steps
        self.player.set_enabled(True)

    def reset(self) -> None:
        """No run on screen (another model was loaded): empty panes, scrubber and replay disabled."""
        self.set_banner("")
        self.source = None
        self.shown_index = -1
        self.player.set_enabled(False)
        self.player.set_count(1, follow=True)
        self.step_label.setText("no run yet")
        self.clear()

    def clear(self) -> None:
        if self.extent != POINT_RANGE:
            self.extent = POINT_RANGE
            self.point_panes[0].show_extent(POINT_RANGE)
        for pane in self.image_panes:
            pane.show_image(None)
        for pane in self.point_panes:
            pane.show_points(None)

    def new_frame(self, frame: Any) -> None:
        """The newest frame of the running run: extend the scrubber; show it when following."""
        player = self.player
        at_end = player.index() == player.count() - 1
        follow = self.following and at_end
        player.set_count(max(player.count(), frame.index + 1), follow=follow)
        if follow:
            self._show(frame, live=True)

    def finish(self, num_frames: int) -> None:
        """The run ended with `num_frames` frames: show the last one unless the user scrubbed away (2-D points
        already on screen are not drawn again; a latent model's last images are its full decode, so they are)."""
        self.player.set_count(num_frames, follow=self.following)
        elapsed = getattr(self.source, "elapsed", None)
        self.player.set_elapsed(elapsed() if callable(elapsed) else None)
        index = self.player.index()
        if not (self.points_mode and index == self.shown_index):
            self.show_step(index)

    def show_step(self, index: int) -> None:
        """Show recorded step `index` from the source (scrubbing, replay)."""
        if self.source is None or not 0 <= index < len(self.source):
            return
        self._show(self.source.frame(index))

    def _show(self, frame: Any, live: bool = False) -> None:
        self.shown_index = frame.index
        announced_later = False
        if self.points_mode:
            announced_later = self._paint_in_later_turns(announce=live)
            self._fit_plane(frame.x0)
            self.point_panes[0].show_points(frame.xt)
            self.point_panes[1].show_points(frame.x0)
        else:
            self.image_panes[0].show_image(frame.xt)
            self.image_panes[1].show_image(frame.x0)
        if frame.num_steps == 0 and frame.timestep is None and len(self.source or ()) == 1:
            self.step_label.setText("final image only (no steps saved)")
        else:
            self.step_label.setText(step_text(frame.index, frame.num_steps, frame.timestep, frame.noise_level))
        if not announced_later:
            self.step_shown.emit(frame.index)

    def _fit_plane(self, x0: np.ndarray | None) -> None:
        """Size the (linked) 2-D panes to hold the x̂0 cloud on screen: grow at once when it leaves the plane
        (it overshoots under strong guidance), shrink only once half the plane would hold it, so that
        stepping back and forth does not zoom in and out at every step. (x_t is not fitted: its early
        noise would zoom every run out, and most of it lies on the usual plane anyway.)"""
        need = extent_for(x0, POINT_RANGE)
        if need > self.extent or 2 * need <= self.extent:
            self.extent = need
            self.point_panes[0].show_extent(need)

    def _paint_in_later_turns(self, announce: bool) -> bool:
        """Paint the 2-D panes after this turn, each in an event-loop turn of its own: x_t once the loop has
        seen to its timers and input, x̂0 after x_t's paint. Painted in the turn that took a frame, the two
        and the frame's own work held the GUI thread 10–15 ms at once while the sampler ran (more on a plane
        change, when both are drawn anew: bench/ui_latency.py).

        `announce` (a live frame): `step_shown`, which draws the step's guidance overlays (arrows, paths, the
        chosen sample, the plots' cursors), is emitted in a turn of its own before x_t's paint, for the step
        then on screen; it was a third of the frame's turn. Returns whether a part will emit it."""
        xt_pane, x0_pane = self.point_panes
        if self.paints or not xt_pane.isVisible():  # the paints of an earlier frame are still to come: they
            return announce and self._announce_due  # show this one, and announce it unless that is done
        xt_pane.setUpdatesEnabled(False)
        x0_pane.setUpdatesEnabled(False)
        self._announce_due = announce
        self.paints.add(*([self._announce] if announce else []),
                        lambda: xt_pane.setUpdatesEnabled(True), lambda: x0_pane.setUpdatesEnabled(True))
        return announce

    def _announce(self) -> None:
        self._announce_due = False
        self.step_shown.emit(self.shown_index)

    def _draw_planes_ahead(self) -> None:
        """Once the 2-D panes have kept a size for AHEAD_DELAY_MS, draw their axes over every plane they may
        move to, one axis and plane per idle turn (68 turns of 2–4 ms; after a frame's paints while a run is
        live): the first run after a model switch moved through planes never drawn at this size."""
        self.ahead.cancel()
        if all(pane.isVisible() for pane in self.point_panes):
            self.ahead.add(*(part for pane in self.point_panes for part in pane.planes_ahead()))

    def _on_index(self, value: int) -> None:
        self.following = value == self.player.count() - 1
        self.show_step(value)
