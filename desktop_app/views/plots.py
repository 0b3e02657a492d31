"""Per-step plots: classifier p(y | x_t) of the target, the guidance term's norm, the noise level."""
from __future__ import annotations

import functools

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from ..tasks import Turns, while_showing
from .captions import CAPTIONS
from .point_cloud import cache_axes

CURVES = (  # key, title (with its caption line under it, `captions.CAPTIONS[key]`), colour
    ("prob", CAPTIONS["prob"].titled("classifier p(y | x<sub>t</sub>) of the target"), "#1f77b4"),
    ("norm", CAPTIONS["norm"].titled("guidance term ‖Δε‖"), "#d62728"),
    ("noise", CAPTIONS["noise"].titled("noise level √(1−ᾱ<sub>t</sub>)"), "#555555"),
)
CURVE_KEYS = tuple(key for key, _, _ in CURVES)


def free_width(label: pg.LabelItem) -> None:
    """Let a layout give `label` less width than its text needs (pyqtgraph makes the text's width the label's
    minimum and preferred width at every change and resize): a long title then runs past its column instead of
    widening it, and the plots keep equal shares of the row."""
    update_min = label.updateMin

    def without_min_width() -> None:
        update_min()
        label.setMinimumWidth(0)
        label.setPreferredWidth(0)

    label.updateMin = without_min_width


def round_top(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least `value` (> 0)."""
    power = 10.0 ** np.floor(np.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if value <= m * power * (1 + 1e-12))


IDLE_STEPS = 50  # the step axes' span before any run (a run then sets its own)
NORM_PADDING = 0.02  # of the guidance-term plot's y range, above and below


class StepPlots(pg.GraphicsLayoutWidget):
    """Three stacked plots over the step index, each with a cursor at the step on screen.

    `set_curves` takes the (steps,) arrays so far (NaN where unknown); `curve_data(key)` reads back
    what a curve shows (key: prob, norm or noise). A curve known only at some steps (the classifier's
    p(y | x_t) computed at a stride, to keep its cost small) is drawn through dots at those steps, and a
    note in its view's top left corner says at how many (`sampled[key]`, `sampled_notes[key]`). In the title
    that count changed at every redraw of a live run, and each change laid the plot out again.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground("w")
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.cursors: dict[str, pg.InfiniteLine] = {}
        self.notes: dict[str, str] = {}
        self.sampled: dict[str, str] = {}
        self.sampled_notes: dict[str, pg.TextItem] = {}
        self.ahead = Turns(self)  # the guidance-term plot's next y axes, drawn ahead (`_fit_norm`)
        self.titles = {key: title for key, title, _ in CURVES}
        for col, (key, title, color) in enumerate(CURVES):
            plot = self.addPlot(row=0, col=col)
            free_width(plot.titleLabel)
            plot.setToolTip(CAPTIONS[key].tooltip())
            plot.setXRange(0, IDLE_STEPS, padding=0.02)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setMenuEnabled(False)
            cache_axes(plot)
            plot.setLabel("bottom", "step")
            self.plots[key] = plot
            self.curves[key] = plot.plot(pen=pg.mkPen(color, width=2))
            cursor = pg.InfiniteLine(angle=90, movable=False,
                                     pen=pg.mkPen("#999", style=pg.QtCore.Qt.PenStyle.DashLine))
            plot.addItem(cursor)
            self.cursors[key] = cursor
            note = pg.TextItem(color="#777", anchor=(0, 0), fill=pg.mkBrush(255, 255, 255, 200))
            note.setParentItem(plot.vb)  # (not one of the view's data items: it keeps its place in the corner)
            note.setPos(2, 0)
            note.setFont(QFont(note.textItem.font().family(), 8))
            note.hide()
            self.sampled_notes[key] = note
            self.notes[key] = self.sampled[key] = ""
            self._retitle(key)
        self.plots["prob"].setYRange(0, 1, padding=0.06)
        self.plots["noise"].setYRange(0, 1, padding=0.06)
        self.plots["norm"].setYRange(0, 1, padding=NORM_PADDING)
        self._norm_top = 0.0  # the guidance-term plot's y-axis top (`_fit_norm`)

    def set_steps(self, num_steps: int) -> None:
        """Fix every x axis to 0..num_steps, so curves grow left to right during a run. Steps are whole
        numbers: a short run's axis ticks every step (a 1-step run shows 0 and 1, not 0.2, 0.4, …). What
        is already so is not set again (that redrew the three axes, ~7 ms at every Start)."""
        self._norm_top = 0.0
        end = max(num_steps, 1)
        spacing = [(1.0, 0.0), (1.0, 0.0)] if num_steps <= 10 else None
        for plot in self.plots.values():
            (x0, x1), _ = plot.viewRange()
            if not np.allclose((x0, x1), (-0.02 * end, 1.02 * end)):
                plot.setXRange(0, end, padding=0.02)
            axis = plot.getAxis("bottom")
            if getattr(axis, "_tickSpacing", None) != spacing:  # pyqtgraph keeps what setTickSpacing was given
                axis.setTickSpacing(levels=spacing)

    def set_notes(self, prob: str = "", norm: str = "") -> None:
        """A grey remark after a plot's title when it has nothing to draw (e.g. 'no classifier')."""
        for key, text in (("prob", prob), ("norm", norm)):
            self.notes[key] = text
            self._retitle(key)

    def _retitle(self, key: str) -> None:
        """Title, caption, and a line for remarks under them (kept when empty, so that the three plots keep
        one height). The title never widens its column: a long one would push the last plot out of the dock."""
        remarks = self.notes[key] or "&nbsp;"
        title = self.titles[key] + f"<br><span style='font-size:8pt; color:#999'>{remarks}</span>"
        plot = self.plots[key]
        if plot.titleLabel.text != title:  # (set again, it is laid out and drawn again)
            plot.setTitle(title, color="#333", size="10pt")

    def set_curves(self, prob: np.ndarray, norm: np.ndarray, noise: np.ndarray) -> None:
        for key, values in zip(CURVE_KEYS, (prob, norm, noise)):
            self.set_curve(key, values)

    def set_curve(self, key: str, values: np.ndarray) -> None:
        """One plot's curve (only that plot is repainted: a third of the three's cost)."""
        values = np.asarray(values, dtype=np.float64)
        steps = np.arange(len(values), dtype=np.float64)
        ok = np.isfinite(values)
        known, updates = int(ok[1:].sum()), len(values) - 1  # index 0, the initial noise, has none
        sampled = f"sampled at {known} of {updates} steps" if 0 < known < updates else ""
        if sampled != self.sampled[key]:
            self._note_sampled(key, sampled)
        dots = {"symbol": "o", "symbolSize": 5, "symbolPen": None, "symbolBrush": self.curves[key].opts["pen"].color()}
        self.curves[key].setData(steps[ok], values[ok], **(dots if sampled else {"symbol": None}))
        if key == "norm":
            self._fit_norm(values)

    def _note_sampled(self, key: str, text: str) -> None:
        self.sampled[key] = text
        self.sampled_notes[key].setText(text)
        self.sampled_notes[key].setVisible(bool(text))

    def _fit_norm(self, norm: np.ndarray) -> None:
        """The guidance-term plot's y axis spans 0 to a round number above the largest value so far (1, 2 or 5
        times a power of ten), so that it changes a few times in a run rather than at every update: each change
        redraws the axis and its labels, the largest part of a repaint of the plots (5-6 ms). The next two such
        axes are drawn ahead, each in an event-loop turn of its own, so that a change takes a drawing kept."""
        values = np.asarray(norm, dtype=np.float64)
        values = values[np.isfinite(values)]
        largest = float(values.max()) if len(values) else 0.0
        if largest <= self._norm_top and largest > self._norm_top / 10 or largest <= 0:
            return
        self._norm_top = round_top(largest)
        plot = self.plots["norm"]
        plot.setYRange(0, self._norm_top, padding=NORM_PADDING)
        self.ahead.cancel()
        if self.isVisible():  # (drawn at the size it is shown at, and not once it is closed)
            next_top = round_top(self._norm_top * 1.01)
            draw = plot.getAxis("left").draw_ahead
            parts = [functools.partial(draw, (-NORM_PADDING * top, (1 + NORM_PADDING) * top))
                     for top in (next_top, round_top(next_top * 1.01))]
            self.ahead.add(*while_showing(self.isVisible, parts))

    @property
    def empty(self) -> bool:
        """Whether no curve has anything to draw (no run is shown)."""
        return not any(len(self.curve_data(key)[0]) for key in self.curves)

    def curve_data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.curves[key].getData()
        return (np.array([]), np.array([])) if x is None else (np.asarray(x), np.asarray(y))

    def set_cursor(self, index: int, key: str | None = None) -> None:
        """Every plot's cursor, or the one of plot `key`."""
        for cursor in self.cursors.values() if key is None else (self.cursors[key],):
            cursor.setValue(index)

    def clear_curves(self) -> None:
        for key, curve in self.curves.items():
            if len(self.curve_data(key)[0]):
                curve.setData([], [])
            if self.sampled[key]:
                self._note_sampled(key, "")


class PlotsPane(QWidget):
    """The plots with their one option above them: `exact_box`, p(y | x_t) at every step."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plots = StepPlots()
        self.exact_box = QCheckBox("Exact curves (every step)")
        self.exact_box.setToolTip(
            "Compute the classifier's p(y | x_t) at every step of the next run. Otherwise, where it costs a "
            "classifier pass of its own, it is computed for the frames on screen, within 3 % of the run's time.")
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addStretch(1)
        top.addWidget(self.exact_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.plots, 1)
