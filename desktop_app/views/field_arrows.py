"""Arrow fields and sample paths over the 2-D x_t pane.

At the step on screen, a grid of arrows over the visible part of the plane shows where the model's own
prediction moves points (−ε, the score direction) and where guidance pushes them (−Δε), on one length
scale, for the update that follows the points shown (the last update at the end). A few samples' paths
trace x_T → … → x_t. Fields are computed from the model (`core.guidance_views.field_vectors`, the
engine's own code path) off the GUI thread, newest request first, and kept per step (until the view is
panned or zoomed), so scrubbing back is instant and the GUI never waits: on a helper thread, or while a
run is live on its sampling thread between two steps (`begin(..., beside=worker.submit)`).
"""
from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QTransform

from core import guidance_views as V

from ..tasks import SerialTasks, Turns

GRID = 11  # arrows along the shorter side of the view
PATHS = 8  # samples whose paths are drawn
MODEL_PEN = pg.mkPen((60, 60, 60, 150), width=1.2)
GUIDANCE_PEN = pg.mkPen((214, 39, 40, 220), width=1.5)
PATH_PEN = pg.mkPen((40, 40, 40, 110), width=1)
SELECTED_PEN = pg.mkPen((20, 20, 20), width=1)  # opaque: BoldCurve strokes it four times, a pixel apart
# While a run is live, a new field is asked for at most this often, so the helper takes little from the sampler.
# The helper runs at normal priority: at the lowest (nice 19) it was descheduled while holding the GIL, and the
# GUI thread, which takes the GIL back for every Python slot and paint, waited up to 230 ms for it under load.
LIVE_FIELD_INTERVAL_S = 0.25


def path_lines(points_by_step: list[np.ndarray], samples: np.ndarray) -> np.ndarray:
    """The paths of `samples` over steps 0 … k as one polyline array (M, 2), paths separated by NaN rows."""
    if not points_by_step or not len(samples):
        return np.zeros((0, 2))
    return polylines(np.stack([np.asarray(p)[samples] for p in points_by_step], axis=1))


def polylines(paths: np.ndarray) -> np.ndarray:
    """(S, k+1, 2) positions → one (M, 2) float64 polyline array, the S paths separated by NaN rows."""
    gaps = np.full((len(paths), 1, 2), np.nan)
    return np.concatenate([np.asarray(paths, np.float64), gaps], axis=1).reshape(-1, 2)


class PathTrace:
    """The positions of a few samples over a run's steps, read from its x_t track once per step and kept:
    drawing step k's paths costs O(k) numpy work, not k Python-level reads of whole point clouds (which,
    late in a 1000-step run of 2000 points, took a tenth of a second a frame; bench/ui_latency.py)."""

    def __init__(self):
        self.key: tuple | None = None
        self.positions = np.zeros((0, 0, 2))
        self.filled = 0

    def upto(self, run: Any, samples: np.ndarray, index: int) -> np.ndarray:
        """(S, index+1, 2) positions of `samples` over steps 0 … index of `run`."""
        key = (run, tuple(int(i) for i in samples))  # runs compare by identity (a new run: a new trace)
        track = run.tracks["xt"]
        if key != self.key or self.positions.shape[1] <= index:
            if key != self.key:
                self.filled = 0
            grown = np.full((len(samples), max(run.num_steps + 1, index + 1), 2), np.nan)
            if self.filled:
                grown[:, : self.filled] = self.positions[:, : self.filled]
            self.key, self.positions = key, grown
        for step in range(self.filled, index + 1):
            self.positions[:, step] = np.asarray(track[step])[samples]
        self.filled = max(self.filled, index + 1)
        return self.positions[:, : index + 1]


class BoldCurve(pg.PlotCurveItem):
    """A curve 2 px wide, stroked as four 1-px lines a device pixel apart (its pen is 1 px and opaque, so
    they overlap without a seam). Qt strokes a 1-px cosmetic line through a fast path and any wider one
    through its general stroker: a 1000-step path took 0.1 ms against 1.7 ms at 2 px, and the chosen
    sample's path is stroked again at every change of plane and every 32 steps of a live run."""

    OFFSETS = ((0, 0), (1, 0), (0, 1), (1, 1))

    def paint(self, painter, *args) -> None:
        if self.xData is None or not len(self.xData):
            return
        path = self.getPath()
        base = painter.transform()
        painter.setPen(self.opts["pen"])
        for dx, dy in self.OFFSETS:
            painter.setTransform(base * QTransform.fromTranslate(dx, dy))  # a shift in device pixels
            painter.drawPath(path)
        painter.setTransform(base)

    def pixelPadding(self) -> float:
        return super().pixelPadding() + 1


SETTLED_STEPS = (256, 32)  # the steps a path layer's cached parts end on: multiples of 256, then of 32


class PathLayer:
    """NaN-separated polylines that grow by a step per frame, drawn as a few curves: the steps up to the last
    multiple of 256, the steps from there to the last multiple of 32 (each cached in device pixels: Qt redraws
    one only when it changes or the view moves), and the short tail after them. Stroking all of eight
    1000-step paths at every frame was the largest part of painting the x_t pane (2–5 ms a frame), and so was
    restroking them whole once per 32 steps late in a run (bench/ui_latency.py); now the long part is
    restroked once per 256 steps, the rest covers at most 256."""

    def __init__(self, plot: pg.PlotWidget, pen: Any, z: float, curve: type = pg.PlotCurveItem):
        self.settled = [curve(pen=pen, connect="finite") for _ in SETTLED_STEPS]
        for item in self.settled:
            item.setCacheMode(item.CacheMode.DeviceCoordinateCache)
        self.tail = curve(pen=pen, connect="finite")
        self._spans: list[tuple | None] = [None] * len(SETTLED_STEPS)  # (key, first step, last step) each shows
        for item in (*self.settled, self.tail):
            item.setZValue(z)
            plot.addItem(item)

    def show(self, trace: np.ndarray | None, key: Any = None) -> None:
        """trace (S, k+1, 2): S paths over steps 0 … k; `key` names the steps' source (the same key and
        span: the same steps). None clears."""
        if trace is None or not trace.size:
            self._spans = [None] * len(SETTLED_STEPS)
            for item in (*self.settled, self.tail):
                item.setData([], [])
            return
        last = trace.shape[1] - 1
        start = 0
        for n, (item, chunk) in enumerate(zip(self.settled, SETTLED_STEPS)):
            end = max(start, last // chunk * chunk)
            span = (key, start, end)
            if span != self._spans[n] or key is None:
                self._spans[n] = span
                part = polylines(trace[:, start: end + 1]) if end > start else np.zeros((0, 2))
                item.setData(part[:, 0], part[:, 1])
            start = end
        tail = polylines(trace[:, start:])
        self.tail.setData(tail[:, 0], tail[:, 1])

    def hold(self) -> None:
        """Leave the settled parts out of the next paints, until `release`: the view's scale has changed, and
        stroking them anew at once would add to a paint that draws everything else anew too."""
        for item in self.settled:
            item.hide()

    def release(self) -> None:
        for item in self.settled:
            item.show()

    def data(self) -> np.ndarray:
        """The vertices drawn, (M, 2) with NaN separators, settled parts first (tests)."""
        parts = [item.getData() for item in (*self.settled, self.tail)]
        return np.concatenate([np.stack([x, y], axis=1) for x, y in parts if x is not None and len(x)]
                              or [np.zeros((0, 2))])


class FieldOverlay(QObject):
    """Arrow layers and paths on a 2-D `pg.PlotWidget`. `field_ready(k)` when update k's field has arrived.
    `after`: the Turns that paint the panes of a live frame (the paths come back after them at a change of plane)."""

    field_ready = Signal(int)

    def __init__(self, plot: pg.PlotWidget, parent: QObject | None = None, after: Turns | None = None):
        super().__init__(parent)
        self.plot = plot
        self.points, self.spacing = self._grid()
        self.model_arrows = pg.PlotCurveItem(pen=MODEL_PEN, connect="pairs")
        self.guidance_arrows = pg.PlotCurveItem(pen=GUIDANCE_PEN, connect="pairs")
        self.paths = PathLayer(plot, PATH_PEN, 5)
        self.selected_path = PathLayer(plot, SELECTED_PEN, 6, curve=BoldCurve)
        # While live, what changes the x_t pane between frames waits for the frame's paints: the paths held at a
        # change of plane (_on_plane_changed) and the arrows of a field that arrives (_on_field).
        self._later = Turns(self, after=after)
        for z, item in enumerate((self.model_arrows, self.guidance_arrows)):
            # changed at most a few times a second while a run is live: kept as pictures in between
            item.setCacheMode(item.CacheMode.DeviceCoordinateCache)
            item.setZValue(7 + z)
            plot.addItem(item)
        self.show = {"score_arrows": True, "guidance_arrows": True, "paths": True}
        self.run: Any = None
        self.bundle: Any = None
        self._trace = PathTrace()
        self.index = -1
        self.sample = 0
        self.note = ""
        self.fields: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._wanted: int | None = None
        self._busy = False
        self._generation = 0
        self.live = False  # a run being sampled: fields are paced (LIVE_FIELD_INTERVAL_S)
        self.beside: Any = None  # while live, the sampler's `submit` (fields computed between its steps)
        self._submitted_at = 0.0
        self._pace = QTimer(self)
        self._pace.setSingleShot(True)
        self._pace.timeout.connect(self._next)
        self._tasks = SerialTasks("Could not compute the arrow field: ", self)
        self._tasks.done.connect(self._on_field)
        self._tasks.failed.connect(self._on_failed)
        plot.getViewBox().sigRangeChangedManually.connect(self._on_view_moved)
        if hasattr(plot, "plane_changed"):  # a PointPane fitted to its samples
            plot.plane_changed.connect(self._on_plane_changed)

    def _grid(self) -> tuple[np.ndarray, float]:
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        return V.plane_grid((x0, x1), (y0, y1), GRID)

    def _on_view_moved(self, *_args: Any) -> None:
        """Panned, zoomed or fitted to the samples: the fields so far cover another part of the plane."""
        self.points, self.spacing = self._grid()
        self._generation += 1
        self.fields = {}
        if self.index >= 0:
            self.show_step(self.index)

    def _on_plane_changed(self) -> None:
        """The app fitted the plane to the samples. While a run is live, the paths' settled parts come back in a
        turn after the panes' paints: that paint then draws the points, the axes and the backdrop at the new
        scale (6-16 ms on the x_t pane, the longest the GUI thread was held in toy runs), and the paths are
        stroked anew in a paint of their own."""
        self._on_view_moved()
        if self.live:
            for layer in (self.paths, self.selected_path):
                layer.hold()
            self._later.add(self._release_paths)

    def _release_paths(self) -> None:
        for layer in (self.paths, self.selected_path):
            layer.release()

    # --- runs ------------------------------------------------------------------------------------

    def begin(self, run: Any, bundle: Any, live: bool = False, beside: Any = None) -> None:
        """Show `run` (tracks of 2-D points); fields come from `bundle`, or are unavailable when it is None
        (the run's model is not the one loaded). `live`: the run is being sampled (see `set_live`), by the
        worker whose `submit` is `beside`: fields are then computed on its thread, between steps (a third
        busy thread took the core the GUI thread paints on, on 2 cores: bench/ui_latency.py)."""
        self.run, self.bundle = run, bundle
        self.live = live
        self.beside = beside if live else None
        self._generation += 1
        self.fields = {}
        self._wanted = None
        self.index = -1
        self.points, self.spacing = self._grid()
        self.note = "" if bundle is not None else f"load {run.model_name} to see its arrows"
        self.clear()

    def set_live(self, live: bool) -> None:
        """While live, fields are computed at most every LIVE_FIELD_INTERVAL_S; afterwards at once."""
        self.live = live
        if not live:
            self.beside = None
            self._pace.stop()
            self._next()

    def reset(self) -> None:
        self.run = self.bundle = None
        self._generation += 1
        self.fields = {}
        self.index = -1
        self.clear()

    def clear(self) -> None:
        for item in (self.model_arrows, self.guidance_arrows):
            item.setData([], [])
        for layer in (self.paths, self.selected_path):
            layer.show(None)

    def set_visible(self, key: str, on: bool) -> None:
        """Toggle one layer: score_arrows, guidance_arrows or paths."""
        self.show[key] = on
        if self.index >= 0:
            self.show_step(self.index)

    def set_sample(self, sample: int) -> None:
        self.sample = sample
        if self.index >= 0:
            self._draw_paths(self.index)

    def update_of(self, index: int) -> int:
        """The update whose field moves the points of frame `index`: the next one (the last at the end)."""
        return min(index + 1, self.run.num_steps)

    # --- painting --------------------------------------------------------------------------------

    def show_step(self, index: int) -> None:
        """Draw frame `index`: its paths now, its arrows as soon as the field is known."""
        if self.run is None or not 0 <= index < len(self.run):
            return
        self.index = index
        self._draw_paths(index)
        k = self.update_of(index)
        if k in self.fields or self.bundle is None:
            self._draw_arrows(k)
        else:
            self._wanted = k
            self._next()

    def _draw_paths(self, index: int) -> None:
        track = self.run.tracks["xt"]
        if not self.show["paths"] or not len(track):
            self.paths.show(None)
            self.selected_path.show(None)
            return
        batch = len(track[0])
        chosen = np.unique(np.linspace(0, batch - 1, min(PATHS, batch)).round().astype(int))
        own = min(self.sample, batch - 1)
        others = chosen[chosen != own]
        trace = self._trace.upto(self.run, np.append(others, own), index)
        self.paths.show(trace[:-1], self._trace.key)
        self.selected_path.show(trace[-1:], self._trace.key)

    def _draw_arrows(self, k: int) -> None:
        field = self.fields.get(k)
        if field is None:
            self.model_arrows.setData([], [])
            self.guidance_arrows.setData([], [])
            return
        model, guidance = field
        factor = V.arrow_scale([model, guidance], self.spacing)
        longest = 1.5 * self.spacing
        for item, vectors, key in ((self.model_arrows, model, "score_arrows"),
                                   (self.guidance_arrows, guidance, "guidance_arrows")):
            if vectors is None or not self.show[key] or factor == 0:
                item.setData([], [])
                continue
            segments = V.arrow_segments(self.points, vectors * factor, longest, head=0.22)
            item.setData(segments[:, 0], segments[:, 1])

    def arrows(self, key: str) -> np.ndarray:
        """The segments a layer draws now, (2M, 2) (tests)."""
        item = self.model_arrows if key == "score_arrows" else self.guidance_arrows
        x, y = item.getData()
        return np.zeros((0, 2)) if x is None else np.stack([x, y], axis=1)

    # --- computing fields --------------------------------------------------------------------------

    def _next(self) -> None:
        """Compute the wanted field unless one is being computed (newest request wins)."""
        k = self._wanted
        if self._busy or k is None or k in self.fields or self.bundle is None:
            return
        wait = self._submitted_at + LIVE_FIELD_INTERVAL_S - time.perf_counter() if self.live else 0.0
        if wait > 0:
            if not self._pace.isActive():
                self._pace.start(int(1000 * wait) + 1)
            return
        self._submitted_at = time.perf_counter()
        self._busy = True
        request, bundle, points = self.run.request, self.bundle, self.points
        field = lambda: V.field_vectors(request, bundle, points, k)
        self._tasks.submit((self._generation, k), field, on=self.beside)

    def _on_field(self, tag: tuple[int, int], field: Any) -> None:
        self._busy = False
        generation, k = tag
        if generation == self._generation:
            self.fields[k] = field
            if self.live:  # drawn after the frame's paints, not in the pass that paints them
                self._later.add(functools.partial(self._draw_arrows_of, k))
            else:
                self._draw_arrows_of(k)
            self.field_ready.emit(k)
        self._next()

    def _draw_arrows_of(self, k: int) -> None:
        """Draw update k's field if it is the one of the frame on screen."""
        if self.index >= 0 and self.update_of(self.index) == k and k in self.fields:
            self._draw_arrows(k)

    def _on_failed(self, tag: tuple[int, int], message: str) -> None:
        self._busy = False
        self.note = message
        self.bundle = None  # do not retry a model that cannot evaluate its field

    def close(self, timeout: float | None = None) -> bool:
        """At closing: wait for a field being computed, then end the helper thread."""
        return self._tasks.close(timeout)
