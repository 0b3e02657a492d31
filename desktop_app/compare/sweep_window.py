"""Sweep window: choose a parameter, its values and seeds; runs fill a labelled grid as they finish.

The runs execute one after another in a daemon thread (`SweepRunner`, draining `sweep.run_sweep`);
finished cells arrive as queued signals. The window takes the base request and the loaded model
from two callables, so it works inside the main window and on its own.
"""
from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from core.fileio import SaveError
from core.pngmeta import write_png

from ..qtpix import to_pixmap
from ..tasks import ThreadedJob, _emit
from .sweep import PARAMETERS, SweepCell, SweepSpec, compose_grid, parse_seeds, parse_values, run_sweep

if TYPE_CHECKING:  # core loads torch; this window is built before that
    from core import ModelBundle, SamplingRequest

DEFAULT_VALUES = {"weight": "0, 1, 3, 6", "scale": "0, 1, 4, 10", "steps": "10, 25, 50, 100",
                  "eta": "0, 0.5, 1", "sampler": "ddim, ddpm"}
PARAMETER_NAMES = {"weight": "CFG weight w", "scale": "classifier scale s", "steps": "steps",
                   "eta": "DDIM η", "sampler": "sampler"}
CELL_SIZE = 192


class SweepRunner(ThreadedJob):
    """Runs a sweep in a thread. cell_done(SweepCell) per run; then finished(completed) or failed(msg)."""

    cell_done = Signal(object)
    finished = Signal(bool)
    failed = Signal(str)

    def __init__(self, spec: SweepSpec, bundle: ModelBundle, parent: QObject | None = None):
        super().__init__("sweep", parent)
        self.spec, self.bundle = spec, bundle
        self.cancel = threading.Event()

    def stop(self) -> None:
        self.cancel.set()

    def _run(self) -> None:
        done = 0
        try:
            for cell in run_sweep(self.spec, self.bundle, self.cancel):
                done += 1
                _emit(self.cell_done, cell)
        except Exception as exc:  # a failing run becomes a message; the window stays usable
            traceback.print_exc()
            _emit(self.failed, str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
            return
        rows, cols = self.spec.shape
        _emit(self.finished, done == rows * cols)


class SweepWindow(QWidget):
    """Controls on top, the labelled grid below (rows = seeds, columns = values)."""

    sweep_finished = Signal(bool)  # True when every cell ran

    def __init__(self, base_request: Callable[[], SamplingRequest | None],
                 bundle: Callable[[], ModelBundle | None], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Guidance sweep")
        self._base_request, self._bundle = base_request, bundle
        self.spec: SweepSpec | None = None
        self.model_name = ""
        self.cells: dict[tuple[int, int], SweepCell] = {}
        self.runner: SweepRunner | None = None

        self.parameter = QComboBox()
        for key in PARAMETERS:
            self.parameter.addItem(PARAMETER_NAMES[key], key)
        self.values = QLineEdit(DEFAULT_VALUES["weight"])
        self.values.setToolTip("Values separated by commas or spaces. For step sections like "
                               "10,15,20 separate the values with ';'.")
        self.seeds = QLineEdit("0")
        self.seeds.setToolTip("Seeds, one grid row each: e.g. 0, 1, 2 or 0-3")
        self.run_button = QPushButton("Run sweep")
        self.stop_button = QPushButton("Stop")
        self.save_button = QPushButton("Save grid…")
        self.status = QLabel("Runs use the current panel settings; only the swept parameter changes.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Parameter", self.parameter)
        form.addRow("Values", self.values)
        form.addRow("Seeds (rows)", self.seeds)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setSpacing(6)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_widget)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        self.resize(1000, 700)

        self.parameter.currentIndexChanged.connect(self._parameter_changed)
        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_clicked)
        self._set_running(False)

    # --- state ---

    def _parameter_changed(self) -> None:
        self.values.setText(DEFAULT_VALUES[self.parameter.currentData()])

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(not running and bool(self.cells))
        for w in (self.parameter, self.values, self.seeds):
            w.setEnabled(not running)

    def is_running(self) -> bool:
        return self.runner is not None and self.runner.is_running()

    def cell_label(self, row: int, col: int) -> QLabel:
        item = self.grid.itemAtPosition(row + 1, col + 1)
        return item.widget()

    # --- running ---

    def build_spec(self) -> SweepSpec:
        """The sweep the controls describe; ValueError with a readable message otherwise."""
        base = self._base_request()
        if base is None:
            raise ValueError("Load a model and choose valid settings before sweeping.")
        parameter = self.parameter.currentData()
        return SweepSpec(base, parameter, parse_values(parameter, self.values.text()),
                         parse_seeds(self.seeds.text()))

    def start(self) -> bool:
        """Start the sweep; False (with the reason in the status line) if it cannot start."""
        if self.is_running():
            return False
        bundle = self._bundle()
        try:
            if bundle is None:
                raise ValueError("No model is loaded yet.")
            spec = self.build_spec()
        except ValueError as exc:
            self.status.setText(f"Cannot sweep: {exc}")
            return False
        self.spec, self.model_name, self.cells = spec, bundle.name, {}
        self._build_grid()
        self.runner = SweepRunner(spec, bundle, self)
        self.runner.cell_done.connect(self._on_cell)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        rows, cols = spec.shape
        self.status.setText(f"Running {rows * cols} runs: {spec.title(bundle.name)}")
        self._set_running(True)
        self._mark_running(0)
        self.runner.start()
        return True

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.status.setText("Stopping after the current step…")

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop any sweep and wait for its thread (window close)."""
        if self.runner is not None:
            self.runner.stop()
            self.runner.wait(timeout)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)

    def _build_grid(self) -> None:
        while self.grid.count():
            widget = self.grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        spec = self.spec
        rows, cols = spec.shape
        for c in range(cols):
            head = QLabel(f"<b>{spec.column_label(c)}</b>")
            head.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.grid.addWidget(head, 0, c + 1)
        for r in range(rows):
            self.grid.addWidget(QLabel(f"<b>{spec.row_label(r)}</b>"), r + 1, 0)
            for c in range(cols):
                cell = QLabel("waiting")
                cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
                cell.setFixedSize(CELL_SIZE, CELL_SIZE)
                cell.setStyleSheet("background: #eee; color: #888; border: 1px solid #ccc;")
                self.grid.addWidget(cell, r + 1, c + 1)

    def _mark_running(self, index: int) -> None:
        rows, cols = self.spec.shape
        if index < rows * cols:
            self.cell_label(*divmod(index, cols)).setText("running…")

    def _on_cell(self, cell: SweepCell) -> None:
        self.cells[cell.row, cell.col] = cell
        label = self.cell_label(cell.row, cell.col)
        label.setStyleSheet("border: 1px solid #ccc; background: white;")
        label.setPixmap(to_pixmap(cell.picture).scaled(
            CELL_SIZE - 2, CELL_SIZE - 2, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        label.setToolTip(f"{self.spec.row_label(cell.row)}, {self.spec.column_label(cell.col)}: "
                         f"{cell.result.seconds:.2f} s")
        rows, cols = self.spec.shape
        self.status.setText(f"{len(self.cells)} of {rows * cols} runs done.")
        self._mark_running(cell.row * cols + cell.col + 1)

    def _on_finished(self, completed: bool) -> None:
        rows, cols = self.spec.shape
        for (r, c) in ((r, c) for r in range(rows) for c in range(cols)):
            if (r, c) not in self.cells:
                self.cell_label(r, c).setText("not run")
        self.status.setText(f"Sweep finished: {len(self.cells)} runs." if completed
                            else f"Sweep stopped after {len(self.cells)} of {rows * cols} runs.")
        self._set_running(False)
        self.sweep_finished.emit(completed)

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"The sweep failed: {message}")
        self._set_running(False)
        self.sweep_finished.emit(False)

    # --- saving ---

    def grid_picture(self):
        """The whole grid with its legend as (H, W, 3) uint8; ValueError before any cell is done."""
        if self.spec is None or not self.cells:
            raise ValueError("Run a sweep first: there is nothing to save yet.")
        rows, cols = self.spec.shape
        return compose_grid({k: v.picture for k, v in self.cells.items()},
                            [self.spec.row_label(r) for r in range(rows)],
                            [self.spec.column_label(c) for c in range(cols)],
                            title=self.spec.title(self.model_name))

    def save_grid(self, path: str | Path) -> Path:
        """Write the grid PNG (atomically) with the base settings embedded; SaveError/ValueError on failure."""
        picture = self.grid_picture()
        meta = {"model": self.model_name, "request": self.spec.base.to_dict(),
                "sweep": {"parameter": self.spec.parameter, "values": list(self.spec.values),
                          "seeds": list(self.spec.seeds)}}
        return write_png(path, picture, meta)

    def _save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save sweep grid", f"sweep-{self.spec.parameter}.png",
                                              "PNG images (*.png)")
        if not path:
            return
        try:
            saved = self.save_grid(path if path.lower().endswith(".png") else path + ".png")
        except (SaveError, ValueError) as exc:
            self.status.setText(f"Could not save the grid: {exc}")
            return
        self.status.setText(f"Saved {saved}")
