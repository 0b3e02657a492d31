"""Sweep window: choose a parameter, its values and seeds; runs fill a labelled grid as they finish.

The runs execute one after another in a daemon thread (`SweepRunner`, draining `sweep.run_sweep`);
finished cells arrive as queued signals. The window takes the base request and the loaded model
from two callables, so it works inside the main window and on its own.

Once the sweep is done (or reopened from the library, `show_group`), one step player moves every cell
to the same step (`steps.StepLock`: by noise level when the cells differ in length), showing x_t or
x̂0; it plays as one animation and exports as one animated GIF or APNG.
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

from ..library.export import write_animation
from ..qtpix import to_pixmap
from ..tasks import ThreadedJob, _emit
from ..views.player import StepPlayer, step_text
from .steps import VIEWS, StepLock
from .sweep import (
    MAX_CELLS,
    PARAMETERS,
    SweepCell,
    SweepSpec,
    animation_frames,
    compose_grid,
    parse_seeds,
    parse_values,
    run_sweep,
)

if TYPE_CHECKING:  # core loads torch; this window is built before that
    from core import ModelBundle, SamplingRequest

DEFAULT_VALUES = {"weight": "0, 1, 3, 6", "scale": "0, 1, 4, 10", "steps": "10, 25, 50, 100",
                  "eta": "0, 0.5, 1", "sampler": "ddim, ddpm"}
PARAMETER_NAMES = {"weight": "CFG weight w", "scale": "classifier scale s", "steps": "steps",
                   "eta": "DDIM η", "sampler": "sampler"}
CELL_SIZE = 192  # px: the smallest a cell gets; bigger when the window has room (`SweepWindow.cell_size`)
MAX_CELL_SIZE = 512


class SweepRunner(ThreadedJob):
    """Runs a sweep in a thread. cell_done(SweepCell) per run; then finished(completed) or failed(msg)."""

    cell_done = Signal(object)
    finished = Signal(bool)
    failed = Signal(str)

    def __init__(self, spec: SweepSpec, bundle: ModelBundle, parent: QObject | None = None):
        super().__init__("sweep", parent, lane=True)
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
    position_shown = Signal(int)  # every cell now shows the step of this shared position

    def __init__(self, base_request: Callable[[], SamplingRequest | None],
                 bundle: Callable[[], ModelBundle | None], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Guidance sweep")
        self._base_request, self._bundle = base_request, bundle
        self.spec: SweepSpec | None = None
        self.model_name = ""
        self.cells: dict[tuple[int, int], SweepCell] = {}
        self.runner: SweepRunner | None = None
        self.lock: StepLock | None = None
        self._order: list[tuple[int, int]] = []  # the cells in the lock's order
        self.cell_size = CELL_SIZE

        self.parameter = QComboBox()
        for key in PARAMETERS:
            self.parameter.addItem(PARAMETER_NAMES[key], key)
        self.values = QLineEdit(DEFAULT_VALUES["weight"])
        self.values.setToolTip("Values separated by commas or spaces. For step sections like "
                               "10,15,20 separate the values with ';'.")
        self.seeds = QLineEdit("0")
        self.seeds.setToolTip(f"Seeds, one grid row each: e.g. 0, 1, 2 or 0-3 "
                              f"(seeds × values: at most {MAX_CELLS} runs)")
        self.run_button = QPushButton("Run sweep")
        self.stop_button = QPushButton("Stop")
        self.save_button = QPushButton("Save grid…")
        self.export_button = QPushButton("Export animation…")
        self.export_button.setToolTip("Every cell at every step, as one animated GIF (or APNG: name it .png)")
        self.status = QLabel("Runs use the current panel settings; only the swept parameter changes.")
        self.status.setWordWrap(True)
        self.banner = QLabel()
        self.banner.setStyleSheet("background: #fff3c4; color: #5a4500; padding: 2px 8px;")
        self.banner.hide()
        self.player = StepPlayer()
        self.player.index_changed.connect(self.show_position)
        self.view = QComboBox()
        for key, label in VIEWS.items():
            self.view.addItem(label, key)
        self.view.setToolTip("What every cell shows at the step: the noisy sample or the predicted clean one")
        self.view.currentIndexChanged.connect(lambda _i: self.show_position(self.player.index()))

        form = QFormLayout()
        form.addRow("Parameter", self.parameter)
        form.addRow("Values", self.values)
        form.addRow("Seeds (rows)", self.seeds)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.stop_button, self.save_button, self.export_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setSpacing(6)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_widget)
        playing = QHBoxLayout()
        playing.addWidget(QLabel("Show"))
        playing.addWidget(self.view)
        playing.addWidget(self.player, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        layout.addLayout(playing)
        self.resize(1000, 760)

        self.parameter.currentIndexChanged.connect(self._parameter_changed)
        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_clicked)
        self.export_button.clicked.connect(self._export_clicked)
        self._set_running(False)

    # --- state ---

    def _parameter_changed(self) -> None:
        self.values.setText(DEFAULT_VALUES[self.parameter.currentData()])

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(not running and bool(self.cells))
        self.export_button.setEnabled(not running and bool(self.cells))
        for w in (self.parameter, self.values, self.seeds):
            w.setEnabled(not running)
        self.player.set_enabled(not running and self.lock is not None)

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
        self.lock, self._order = None, []
        self.banner.hide()
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
                cell.setFixedSize(self.cell_size, self.cell_size)
                cell.setStyleSheet("background: #eee; color: #888; border: 1px solid #ccc;")
                self.grid.addWidget(cell, r + 1, c + 1)
        self._fit_cells()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._fit_cells()

    def _fit_cells(self) -> None:
        """Cells as large as the grid's area allows (CELL_SIZE … MAX_CELL_SIZE), drawn again at that size."""
        if self.spec is None or self.grid.itemAtPosition(1, 1) is None:
            return
        rows, cols = self.spec.shape
        area = self.scroll.viewport().size()
        spacing, margins = self.grid.spacing(), self.grid.contentsMargins()
        names = self.grid.itemAtPosition(1, 0).widget().sizeHint().width()
        heads = self.grid.itemAtPosition(0, 1).widget().sizeHint().height()
        width = (area.width() - margins.left() - margins.right() - names - spacing * cols) // cols
        height = (area.height() - margins.top() - margins.bottom() - heads - spacing * rows) // rows
        size = max(CELL_SIZE, min(width, height, MAX_CELL_SIZE))
        if size == self.cell_size:
            return
        self.cell_size = size
        for r in range(rows):
            for c in range(cols):
                self.cell_label(r, c).setFixedSize(size, size)
        if self.lock is not None:
            self.show_position(self.player.index())
        else:
            for cell in self.cells.values():
                self._fill_cell(cell)

    def _mark_running(self, index: int) -> None:
        rows, cols = self.spec.shape
        if index < rows * cols:
            self.cell_label(*divmod(index, cols)).setText("running…")

    def _fill_cell(self, cell: SweepCell) -> None:
        label = self.cell_label(cell.row, cell.col)
        label.setStyleSheet("border: 1px solid #ccc; background: white;")
        label.setPixmap(to_pixmap(cell.picture).scaled(
            self.cell_size - 2, self.cell_size - 2, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        label.setToolTip(f"{self.spec.row_label(cell.row)}, {self.spec.column_label(cell.col)}: "
                         f"{cell.result.seconds:.2f} s")

    def _on_cell(self, cell: SweepCell) -> None:
        self.cells[cell.row, cell.col] = cell
        self._fill_cell(cell)
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
        self._lock_cells()
        self._set_running(False)
        self.sweep_finished.emit(completed)

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"The sweep failed: {message}")
        self._set_running(False)
        self.sweep_finished.emit(False)

    # --- one scrubber for every cell ---

    def _lock_cells(self) -> None:
        """Put every finished cell on the shared step player, at its last step."""
        self._order = sorted(self.cells)
        self.lock = StepLock([self.cells[key].result for key in self._order]) if self._order else None
        count = len(self.lock) if self.lock is not None else 0
        self.player.set_count(max(count, 1), follow=True)
        self.player.set_elapsed(self.lock.elapsed() if self.lock is not None else None)
        self.player.set_enabled(count > 1)
        if self.lock is not None:
            self.show_position(self.player.index())

    def show_position(self, position: int) -> None:
        """Every cell at the step of shared `position` (x_t or x̂0, as chosen)."""
        lock = self.lock
        if lock is None or not 0 <= position < len(lock):
            return
        view = self.view.currentData()
        for i, (row, col) in enumerate(self._order):
            picture = lock.picture(i, position, view, size=self.cell_size - 2)
            self.cell_label(row, col).setPixmap(to_pixmap(picture).scaled(
                self.cell_size - 2, self.cell_size - 2, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation))
        reference = lock.results[lock.reference]
        timestep = reference.track("timestep")[position] if position < len(reference.track("timestep")) else None
        self.player.step_label.setText(step_text(position, len(lock) - 1, timestep, lock.noise_level(position)))
        self.position_shown.emit(position)

    def show_group(self, spec: SweepSpec, model_name: str, results: dict[tuple[int, int], object],
                   banner: str) -> None:
        """Show a sweep reopened from the library: its grid, every cell scrubbable, `banner` above it."""
        if self.is_running():
            raise ValueError("A sweep is running: stop it before reopening another.")
        self.spec, self.model_name = spec, model_name
        self.cells = {key: SweepCell.reopened(*key, result) for key, result in results.items()}
        self._build_grid()
        for (row, col), cell in self.cells.items():
            self._fill_cell(cell)
        rows, cols = spec.shape
        for key in ((r, c) for r in range(rows) for c in range(cols)):
            if key not in self.cells:
                self.cell_label(*key).setText("not run")
        self.banner.setText(banner)
        self.banner.show()
        self.status.setText(spec.title(model_name))
        self._lock_cells()
        self._set_running(False)

    def export_animation(self, path: str | Path, frame_ms: int = 80) -> Path:
        """Every cell at every step (at most sweep.ANIMATION_FRAMES), as one GIF or APNG (.png);
        SaveError/ValueError on failure."""
        if self.spec is None or not self.cells:
            raise ValueError("Run a sweep first: there is nothing to animate yet.")
        frames = animation_frames(self.spec, self.model_name, self.cells, self.view.currentData())
        return write_animation(path, frames, frame_ms)

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the sweep as an animation",
                                              f"sweep-{self.spec.parameter}.gif",
                                              "Animated GIF (*.gif);;Animated PNG (*.png)")
        if not path:
            return
        if not path.lower().endswith((".gif", ".png")):
            path += ".gif"
        try:
            saved = self.export_animation(path)
        except (SaveError, ValueError) as exc:
            self.status.setText(f"Could not export the animation: {exc}")
            return
        self.status.setText(f"Saved {saved}")

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

    def grid_meta(self) -> dict:
        """What the grid PNG embeds: the base settings (File › Open run or PNG restores them) and the sweep."""
        return {"model": self.model_name, "request": self.spec.base.to_dict(),
                "sweep": {"parameter": self.spec.parameter, "values": list(self.spec.values),
                          "seeds": list(self.spec.seeds)}}

    def save_grid(self, path: str | Path) -> Path:
        """Write the grid PNG (atomically) with the base settings embedded; SaveError/ValueError on failure."""
        return write_png(path, self.grid_picture(), self.grid_meta())

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
