"""The guidance views, wired together: the Guidance dock (sample chooser, maps of image models, arrow
toggles of 2-D models, the twin's distance and the class shares over the steps), the class bars beside
the per-step curves, and the overlays on the live 2-D panes (arrow fields, paths, the twin's x̂0 cloud,
the chosen sample).

`GuidanceViews` follows whatever run the live views show: `begin(run, bundle)` with a live Recorder or a
finished/reopened RunResult, then `show_step(index)` for the step on screen and `refresh()` for the
curves while a run grows. It reads the run's tracks and never touches the engine except for the arrow
fields, which `FieldOverlay` computes on a helper thread.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSpinBox, QStackedWidget, QVBoxLayout, QWidget

from core import guidance_views as V

from .captions import CAPTIONS
from .field_arrows import FieldOverlay
from .guidance_maps import GuidanceMaps, caption_label, connect_tile_clicks
from .guidance_plots import ClassBars, ClassStack, TwinDistance
from .live import LiveViews
from .point_cloud import PointCloudItem

TWIN_COLOR = (70, 70, 70)
QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's "no maximum size"


class GuidancePanel(QWidget):
    """The Guidance dock: which sample to follow, then the maps (images) or the arrow toggles (2-D)."""

    sample_changed = Signal(int)
    layer_toggled = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sample_box = QSpinBox()
        self.sample_box.setRange(0, 0)
        self.sample_box.setToolTip("The sample of the batch these views follow (or click one in x_t or x̂0)")
        self.sample_box.valueChanged.connect(self.sample_changed)
        header = QHBoxLayout()
        header.addWidget(QLabel("Sample"))
        header.addWidget(self.sample_box)
        header.addStretch(1)
        self.maps = GuidanceMaps()
        field_page = QWidget()
        column = QVBoxLayout(field_page)
        column.setContentsMargins(0, 0, 0, 0)
        self.toggles: dict[str, QCheckBox] = {}
        toggles = QHBoxLayout()
        for key in ("score_arrows", "guidance_arrows", "paths"):
            caption = CAPTIONS[key]
            box = QCheckBox(caption.title)
            box.setChecked(True)
            box.setToolTip(caption.tooltip())
            box.toggled.connect(lambda on, key=key: self.layer_toggled.emit(key, on))
            self.toggles[key] = box
            toggles.addWidget(box)
        toggles.addStretch(1)
        column.addLayout(toggles)
        column.addWidget(caption_label(CAPTIONS["arrows"]))
        self.field_note = QLabel("")
        self.field_note.setWordWrap(True)
        self.field_note.setStyleSheet("color: #777;")
        column.addWidget(self.field_note)
        column.addStretch(1)
        self.pages = QStackedWidget()
        self.pages.addWidget(field_page)
        self.pages.addWidget(self.maps)
        self.setMinimumHeight(120)  # a short window squeezes the panes rather than growing taller
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(4, 4, 4, 4)
        self.column.addLayout(header)
        self.column.addWidget(self.pages, 2)

    def add_plot(self, plot: QWidget) -> None:
        """A curve over the steps, below the maps or toggles."""
        plot.setMinimumHeight(150)  # the panel's own minimum stays small (above)
        self.column.addWidget(plot, 1)

    def set_points_mode(self, points: bool) -> None:
        self.pages.setCurrentIndex(0 if points else 1)
        # The toggles need only their own height; the maps take what the curves below leave.
        self.pages.setMaximumHeight(self.pages.widget(0).sizeHint().height() + 30 if points else QWIDGETSIZE_MAX)

    def set_batch(self, batch: int) -> None:
        self.sample_box.setRange(0, max(0, batch - 1))


class GuidanceViews(QObject):
    """Everything the guidance views show, for the run on screen."""

    def __init__(self, live: LiveViews, parent: QObject | None = None):
        super().__init__(parent)
        self.live = live
        self.panel = GuidancePanel()
        self.maps = self.panel.maps
        self.bars = ClassBars()
        self.stack = ClassStack()
        self.twin = TwinDistance()
        for plot in (self.bars, self.stack, self.twin):
            plot.setMinimumWidth(230)
            plot.hide()
        self.panel.add_plot(self.twin)
        self.panel.add_plot(self.stack)
        xt_pane, x0_pane = live.point_panes
        self.field = FieldOverlay(xt_pane, self, after=live.paints)
        self.twin_cloud = PointCloudItem(size=3.5)
        self.twin_cloud.setZValue(1)  # over the data backdrop and the guided cloud, half transparent
        x0_pane.addItem(self.twin_cloud)
        self.marker = pg.ScatterPlotItem(size=14, pen=pg.mkPen("#111", width=2), brush=None, symbol="o")
        self.marker.setZValue(20)
        xt_pane.addItem(self.marker)
        self.run: Any = None
        self.live = False  # a run being sampled (`set_live`)
        self.points_mode = True
        self.index = -1
        self._num_steps = 0
        self.panel.sample_changed.connect(self.set_sample)
        self.panel.layer_toggled.connect(self.field.set_visible)
        for pane in live.image_panes:
            connect_tile_clicks(pane, pane.item, self._batch, self._tile, self.panel.sample_box.setValue)

    @property
    def sample(self) -> int:
        return self.panel.sample_box.value()

    # --- model and run ---------------------------------------------------------------------------

    def set_model(self, points: bool, has_classifier: bool) -> None:
        """A model was loaded: its kind decides which views exist."""
        self.points_mode = points
        self.panel.set_points_mode(points)
        self.stack.setVisible(points and has_classifier)
        self.bars.setVisible(has_classifier)
        self.reset()

    def reset(self) -> None:
        """No run on screen."""
        self.run = None
        self.index = -1
        self.maps.reset()
        self.field.reset()
        self.twin_cloud.set_points(None)
        self.marker.setData([], [])
        self.bars.clear_bars()
        self.stack.clear_bands()
        self.twin.begin(0)
        self.twin.hide()

    def begin(self, run: Any, bundle: Any, live: bool = False, beside: Any = None) -> None:
        """Follow `run` (a live Recorder, `live`, or a RunResult); `bundle` computes its arrow fields (None: the
        run's model is not loaded), on the thread of `beside` (a live run's `SamplingWorker.submit`) if given."""
        self.run = run
        self.live = live
        self.index = -1
        self._num_steps = run.num_steps
        request = run.request
        self.panel.set_batch(request.batch)
        labels = request.labels()
        num_classes, names = _classes(bundle)
        self.bars.begin(names, num_classes, None if labels is None else labels[0])
        has_twin = V.TWIN_DISTANCE in run.tracks
        self.twin.setVisible(has_twin)
        self.twin.begin(run.num_steps)
        if self.points_mode:
            self.field.begin(run, bundle if bundle is not None and bundle.name == run.model_name else None,
                             live, beside)
            self.panel.field_note.setText(self.field.note)
            self.stack.begin(run.num_steps)
            self.twin_cloud.set_points(None)
        else:
            self.maps.begin(run)

    def set_sample(self, sample: int) -> None:
        self.maps.set_sample(sample)
        self.field.set_sample(sample)
        if self.index >= 0:
            self.show_step(self.index)

    # --- the step on screen ----------------------------------------------------------------------

    def show_step(self, index: int) -> None:
        """Show step `index` of the run in every guidance view."""
        run = self.run
        if run is None or not 0 <= index < len(run):
            return
        self.index = index
        sample = self.sample
        tracks = run.tracks
        if self.points_mode:
            self.field.show_step(index)
            self.panel.field_note.setText(self.field.note)
            points = tracks["xt"][index]
            if sample < len(points):
                self.marker.setData([float(points[sample][0])], [float(points[sample][1])])
            twin = _at(tracks, V.TWIN_X0, index)
            self.twin_cloud.set_points(None if twin is None else np.asarray(twin, np.float32), TWIN_COLOR, alpha=120)
        else:
            self.maps.show_step(index)
        if not self.live:  # a live run's bars and plot cursors follow with its curves (`refresh`), not every frame
            self._show_bars(index)
            self._set_cursors(index)

    def _set_cursors(self, index: int) -> None:
        """The step cursor of the plots over the steps (each cursor move repaints its plot, bands and all)."""
        if self.points_mode:
            self.stack.set_cursor(index)
        self.twin.set_cursor(index)

    def _show_bars(self, index: int) -> None:
        at, probs = _latest(self.run.tracks, V.CLASS_PROBS, index)
        sample = self.sample
        self.bars.show_probs(None if probs is None else V.probs_of(probs[min(sample, len(probs) - 1)]),
                             None if at == index else at)

    def set_live(self, live: bool) -> None:
        """While a run is being sampled, the bars and the arrow fields are redrawn a few times a second;
        afterwards at every step shown."""
        self.live = live
        self.field.set_live(live)
        if not live and self.index >= 0:
            self._show_bars(self.index)
            self._set_cursors(self.index)

    def refresh(self) -> None:
        """Redraw the curves over the steps recorded so far (throttled by the caller while running)."""
        for part in self.refresh_parts():
            part()

    def refresh_parts(self) -> list[Callable[[], None]]:
        """`refresh` as parts that each redraw one view (the twin's distance, the class shares, the bars), for
        a caller that runs them in event-loop turns of their own: at once, they and their repaint held the
        GUI thread 5-10 ms while a 2-D run was sampled."""
        return [self._refresh_twin, self._refresh_stack, self._refresh_bars]

    def _follow_length(self, run: Any) -> None:
        if run.num_steps != self._num_steps:  # a live run knows its length from its first step
            self._num_steps = run.num_steps
            self.twin.set_steps(run.num_steps)
            self.stack.set_steps(run.num_steps)

    def _refresh_twin(self) -> None:
        if self.run is not None:
            self._follow_length(self.run)
            if self.twin.isVisible():
                self.twin.set_tracks(self.run.tracks, len(self.run))
                if self.live and self.index >= 0:
                    self.twin.set_cursor(self.index)

    def _refresh_stack(self) -> None:
        if self.run is not None:
            self._follow_length(self.run)
            if self.points_mode and self.stack.isVisible():
                self.stack.set_shares(V.class_shares(self.run.tracks, len(self.run)))
                if self.live and self.index >= 0:
                    self.stack.set_cursor(self.index)

    def _refresh_bars(self) -> None:
        if self.run is not None and self.live and self.index >= 0:
            self._show_bars(self.index)

    # --- clicking a tile of the image grid --------------------------------------------------------

    def _batch(self) -> int:
        return 0 if self.run is None else self.run.request.batch

    def _tile(self) -> tuple[int, int] | None:
        if self.run is None or self.points_mode or not len(self.run):
            return None
        first = self.run.tracks["xt"][0]
        return int(first.shape[1]), int(first.shape[2])


def _at(tracks: Any, name: str, index: int) -> Any:
    values = tracks.get(name)
    return None if values is None or index >= len(values) else values[index]


def _latest(tracks: Any, name: str, index: int) -> tuple[int | None, Any]:
    """(step, value) of the last step ≤ index that has a value of track `name` ((None, None) if none has):
    the classifier's p(k | x_t) is not computed at every step unless the run asked for exact curves."""
    values = tracks.get(name)
    if values is None:
        return None, None
    for i in range(min(index, len(values) - 1), -1, -1):
        if values[i] is not None:
            return i, values[i]
    return None, None


def _classes(bundle: Any) -> tuple[int, tuple[str, ...]]:
    """(number of classes the classifier knows, their names) of a loaded bundle (0, () without one)."""
    if bundle is None or bundle.classifier is None:
        return 0, ()
    return bundle.num_targets, tuple(bundle.target_names)

