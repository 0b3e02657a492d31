"""Plots of the guidance views: p(k | x_t) of every class as bars (selected sample, step on screen) and as
stacked bands over the steps (batch mean), and the distance to the unguided twin over the steps.

Each reads a run's named tracks (`core.guidance_views` names): a live Recorder or a RunResult.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QGraphicsPathItem, QWidget

from core import guidance_views as V
from core.images import PALETTE

from .captions import CAPTIONS
from .plots import IDLE_STEPS, free_width
from .point_cloud import cache_axes

TOP_CLASSES = 10
NAME_AXIS_WIDTH = 92  # px for class names beside the bars
CURSOR_PEN = pg.mkPen("#999", style=pg.QtCore.Qt.PenStyle.DashLine)


def _titled_plot(widget: pg.PlotWidget, key: str) -> pg.PlotItem:
    caption = CAPTIONS[key]
    plot = widget.getPlotItem()
    free_width(plot.titleLabel)  # a title wider than the plot's column would push its view out of the widget
    plot.setTitle(caption.titled(), color="#333", size="10pt")
    plot.setMenuEnabled(False)
    plot.showGrid(x=False, y=True, alpha=0.2)
    cache_axes(plot)
    widget.setToolTip(caption.tooltip())
    return plot


def _class_color(k: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[k % len(PALETTE)])


class ClassBars(pg.PlotWidget):
    """p(k | x_t) of the selected sample at the step on screen, as horizontal bars named by class, most
    probable on top: all classes, or the top 10 plus the target (outlined)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.plot = _titled_plot(self, "class_bars")
        self.plot.showGrid(x=True, y=False, alpha=0.2)
        self.plot.getAxis("left").setWidth(NAME_AXIS_WIDTH)
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setMouseEnabled(False, False)
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.75)
        self.addItem(self.bars)
        # The step the bars are of, when it is not the one on screen, in the plot's bottom right corner (where
        # the least probable classes' short bars leave room). In the title it changed at every redraw of a live
        # run, and each change laid the plot out again (2 ms) and at times drew its axes anew (4-5 ms).
        self.step_note = pg.TextItem(color="#999", anchor=(1, 1))
        self.step_note.hide()
        self.plot.addItem(self.step_note, ignoreBounds=True)
        self.names: tuple[str, ...] = ()
        self.target: int | None = None
        self.shown: np.ndarray = np.zeros(0, int)
        self.heights: np.ndarray = np.zeros(0)

    def begin(self, names: tuple[str, ...], num_classes: int, target: int | None) -> None:
        self.names = tuple(names) or tuple(str(k) for k in range(num_classes))
        self.target = target
        self.clear_bars()

    def clear_bars(self) -> None:
        self.shown, self.heights = np.zeros(0, int), np.zeros(0)
        self.bars.setOpts(x0=[], y=[], width=[])
        self.plot.getAxis("left").setTicks([[]])

    def show_probs(self, probs: np.ndarray | None, from_step: int | None = None) -> None:
        """Bars of `probs` (K,) — None: nothing computed yet; `from_step`: the step they were computed at
        when it is not the one on screen (named in the plot's corner)."""
        self._note_step(from_step)
        if probs is None:
            self.clear_bars()
            return
        order = V.top_classes(probs, self.target, TOP_CLASSES)
        reordered = not np.array_equal(order, self.shown)
        self.shown, self.heights = order, np.asarray(probs, np.float64)[order]
        rows = -np.arange(len(order), dtype=np.float64)  # the most probable on top
        if not reordered:  # while scrubbing or running the order rarely changes: only the widths move
            self.bars.setOpts(width=self.heights)
            return
        colors = [pg.mkBrush(*_class_color(k), 255 if k == self.target else 110) for k in order]
        pens = [pg.mkPen("#222", width=2) if k == self.target else pg.mkPen(None) for k in order]
        self.bars.setOpts(x0=np.zeros(len(order)), y=rows, width=self.heights, brushes=colors, pens=pens)
        self.plot.setYRange(-max(len(order), 3) + 0.4, 0.6, padding=0)
        self.step_note.setPos(1.02, -max(len(order), 3) + 0.4)
        self.plot.getAxis("left").setTicks([[(r, self._short(k)) for r, k in zip(rows, order)]])
        names = "<br>".join(self._name(k) for k in order)
        self.setToolTip(f"{CAPTIONS['class_bars'].tooltip()}<br><br>{names}")  # the full names of the shown

    def _note_step(self, from_step: int | None) -> None:
        """Name `from_step` in the corner when the bars are of another step than the one on screen."""
        self.step_note.setVisible(from_step is not None)
        text = "" if from_step is None else f"step {from_step}"
        if text and text != self.step_note.textItem.toPlainText():
            self.step_note.setText(text)

    def _name(self, k: int) -> str:
        return self.names[k] if k < len(self.names) else str(k)

    def _short(self, k: int) -> str:
        """The class's name up to its first comma, elided to fit beside the bars (the full one is in the tooltip)."""
        metrics = QFontMetrics(self.plot.getAxis("left").style["tickFont"] or self.font())
        return metrics.elidedText(self._name(k).split(",")[0], Qt.TextElideMode.ElideRight, NAME_AXIS_WIDTH - 10)


def _thinned(count: int, pixels: int) -> np.ndarray:
    """Indices of at most about `pixels` of `count` points, evenly spread, first and last kept: a band's outline
    needs no more vertices than the plot has pixels across (filling 1000-step bands of a few classes took
    2-5 ms a repaint, a large part of the GUI thread's longest turns while a 2-D run was sampled)."""
    if count <= max(pixels, 2):
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max(pixels, 2)).round().astype(int))


class ClassStack(pg.PlotWidget):
    """Mean p(k | x_t) over the batch, stacked class by class over the steps, with a step cursor."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.plot = _titled_plot(self, "class_stack")
        self.plot.setYRange(0, 1, padding=0.02)
        self.plot.setLabel("bottom", "step")
        self.plot.setMouseEnabled(False, False)
        self.fills: list[QGraphicsPathItem] = []
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=CURSOR_PEN)
        self.addItem(self.cursor)
        self.bands: np.ndarray = np.zeros((0, 0))
        self.set_steps(IDLE_STEPS)

    def begin(self, num_steps: int) -> None:
        self.set_steps(num_steps)
        self.clear_bands()

    def clear_bands(self) -> None:
        """No bands (no run on screen). Not `clear`: PlotWidget puts its PlotItem's clear on the instance."""
        self._bands(0)

    def set_steps(self, num_steps: int) -> None:
        """Fix the x axis to 0 … num_steps."""
        self.plot.setXRange(0, max(num_steps, 1), padding=0.02)

    def _bands(self, num_classes: int) -> None:
        """One filled band per class, in class colours, edged by a thin grey line."""
        for item in self.fills:
            self.removeItem(item)
        edge = pg.mkPen((80, 80, 80, 120), width=0.5)
        self.fills = []
        for k in range(num_classes):
            band = QGraphicsPathItem()
            band.setBrush(pg.mkBrush(*_class_color(k), 170))
            band.setPen(edge)
            self.addItem(band)
            self.fills.append(band)
        self.bands = np.zeros((0, num_classes + 1))

    def set_shares(self, rows: list[np.ndarray | None]) -> None:
        """rows: per step the batch's mean p(k | x_t), (K,), or None; steps without them are left out."""
        steps = [i for i, r in enumerate(rows) if r is not None]
        if not steps:
            return
        means = np.stack([rows[i] for i in steps]).astype(np.float64)
        if len(self.fills) != means.shape[1]:
            self._bands(means.shape[1])
        cumulative = np.concatenate([np.zeros((len(steps), 1)), np.cumsum(means, axis=1)], axis=1)
        self.bands = cumulative
        # Each band is one closed polygon (lower edge left to right, upper edge back), built by numpy:
        # pyqtgraph's FillBetweenItem walks both curves' paths in Python, ~40 ms a refresh at 1000 steps.
        x = np.asarray(steps, np.float64)
        drawn = _thinned(len(x), int(self.plot.vb.width()))
        x, cumulative = x[drawn], cumulative[drawn]
        outline_x = np.concatenate([x, x[::-1]])
        for k, band in enumerate(self.fills):
            outline_y = np.concatenate([cumulative[:, k], cumulative[::-1, k + 1]])
            path = pg.arrayToQPath(outline_x, outline_y)
            path.closeSubpath()
            band.setPath(path)

    def set_cursor(self, index: int) -> None:
        self.cursor.setValue(index)


class TwinDistance(pg.PlotWidget):
    """RMS distance between this run and its unguided twin over the steps (x_t solid, x̂0 dashed)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.plot = _titled_plot(self, "twin_distance")
        self.plot.setLabel("bottom", "step")
        self.plot.addLegend(offset=(5, 5), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 215))
        self.xt = self.plot.plot(pen=pg.mkPen("#9467bd", width=2), name="x_t")
        self.x0 = self.plot.plot(pen=pg.mkPen("#9467bd", width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine),
                                 name="x̂0")
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=CURSOR_PEN)
        self.addItem(self.cursor)
        self.set_steps(IDLE_STEPS)

    def begin(self, num_steps: int) -> None:
        self.set_steps(num_steps)
        self.xt.setData([], [])
        self.x0.setData([], [])

    def set_steps(self, num_steps: int) -> None:
        """Fix the x axis to 0 … num_steps."""
        self.plot.setXRange(0, max(num_steps, 1), padding=0.02)

    def set_tracks(self, tracks: Any, upto: int) -> None:
        """Draw steps 0 … upto−1 of the twin's distance tracks (batch means)."""
        for curve, name in ((self.xt, V.TWIN_DISTANCE), (self.x0, V.TWIN_X0_DISTANCE)):
            values = list(tracks.get(name, ()))[:upto]
            steps = [i for i, v in enumerate(values) if v is not None]
            curve.setData(np.asarray(steps, np.float64), np.array([float(np.mean(values[i])) for i in steps]))

    def curve_data(self, which: str = "xt") -> tuple[np.ndarray, np.ndarray]:
        x, y = (self.xt if which == "xt" else self.x0).getData()
        return (np.array([]), np.array([])) if x is None else (np.asarray(x), np.asarray(y))

    def set_cursor(self, index: int) -> None:
        self.cursor.setValue(index)
