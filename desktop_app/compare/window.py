"""Compare window: saved runs side by side at any step, a two-way wipe, what differs between them (in
words, and as a highlighted table), and any picture file (e.g. the metrics trade-off plot).

Every entry with a run file is read (on a helper thread) and put on one step player (`steps.StepLock`:
the same step index, or by noise level when the runs' lengths differ); image runs show their grid at
that step, 2-D runs a scatter plot on axes shared by every column (`panes.RunView`). Entries saved
without steps show their final picture. The diff itself is `diff.differing_keys` / `describe_differences`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.runs import RunResult, read_run

from ..library.store import LibraryEntry
from ..qtpix import read_picture, to_pixmap
from ..tasks import BackgroundTask
from ..views.live import class_colors
from ..views.player import StepPlayer, step_text
from .diff import NAMES, describe_differences, differing_keys, effective_settings, format_value, setting_keys
from .panes import PictureLabel, RunView, WipeView
from .steps import VIEWS, StepLock

HIGHLIGHT = QColor(255, 236, 140)


def entry_picture(entry: LibraryEntry) -> tuple[np.ndarray | None, str]:
    """The entry's saved picture as (H, W, 3) uint8 and a note; falls back to the thumbnail."""
    if entry.image_path is not None and entry.image_path.exists():
        try:
            return read_picture(entry.image_path), ""
        except ValueError as exc:
            note = str(exc)
    else:
        note = "saved file missing; showing the thumbnail"
    if entry.thumbnail:
        from io import BytesIO

        from PIL import Image

        return np.asarray(Image.open(BytesIO(entry.thumbnail)).convert("RGB")), note
    return None, note or "no picture"


class CompareWindow(QWidget):
    """Side by side, wipe (exactly two entries) and picture-file tabs, over one step player.

    steps_ready(): the entries' runs are read and on the player. position_shown(k): every view shows the
    step of shared position k.
    """

    steps_ready = Signal()
    position_shown = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare runs")
        self.entries: list[LibraryEntry] = []
        self.flats: list[dict] = []
        self.differing: set[str] = set()
        self.views: list[RunView] = []
        self.lock: StepLock | None = None
        self._runs: list[int] = []  # entry index of each run on the player, in the lock's order
        self._task: BackgroundTask | None = None
        self.tabs = QTabWidget()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet(f"background: {HIGHLIGHT.name()}; padding: 3px 6px;")
        self.player = StepPlayer()
        self.player.index_changed.connect(self.show_position)
        self.view = QComboBox()
        for key, label in VIEWS.items():
            self.view.addItem(label, key)
        self.view.currentIndexChanged.connect(lambda _i: self.show_position(self.player.index()))

        self.columns = QWidget()
        self.columns_layout = QHBoxLayout(self.columns)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.columns)
        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.only_diff = QCheckBox("Only differing settings")
        self.only_diff.toggled.connect(lambda _on: self._fill_table())
        below = QWidget()
        below_layout = QVBoxLayout(below)
        below_layout.setContentsMargins(0, 0, 0, 0)
        below_layout.addWidget(self.only_diff)
        below_layout.addWidget(self.table)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(scroll)
        split.addWidget(below)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([520, 200])
        self.columns.setMinimumHeight(300)
        self.tabs.addTab(split, "Side by side")

        self.wipe = WipeView()
        self.wipe_index = self.tabs.addTab(self.wipe, "Wipe")
        self.picture_tabs: dict[Path, PictureLabel] = {}
        self.empty = QLabel("Select two or more runs in the library and press Compare.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.columns_layout.addWidget(self.empty)

        playing = QHBoxLayout()
        playing.addWidget(QLabel("Show"))
        playing.addWidget(self.view)
        playing.addWidget(self.player, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(playing)
        self.resize(1100, 800)
        self._update_wipe_tab()
        self.player.set_enabled(False)

    # --- content ---

    def set_entries(self, entries: list[LibraryEntry]) -> None:
        """Show these entries (at least one) at their last step, then, once their run files are read,
        every step of them on the player (`steps_ready`); what differs is said and highlighted."""
        self.entries = list(entries)
        self.flats = [effective_settings(e.flat_settings()) for e in self.entries]
        flats = self.flats
        self.differing = differing_keys(flats)
        words = describe_differences(flats)
        self.summary.setText("Differs: " + "; ".join(words) if words else
                             ("Identical settings." if len(flats) > 1 else ""))
        self.summary.setVisible(bool(self.summary.text()))
        while self.columns_layout.count():
            widget = self.columns_layout.takeAt(0).widget()
            if widget is not None and widget is not self.empty:
                widget.deleteLater()
        self.empty.setVisible(not self.entries)
        if not self.entries:
            self.columns_layout.addWidget(self.empty)
        pictures, self.views = [], []
        for i, entry in enumerate(self.entries):
            picture, note = entry_picture(entry)
            pictures.append(picture)
            self.columns_layout.addWidget(self._column(i, entry, picture, note), 1)
        self._fill_table()
        self._update_wipe_tab()
        if len(self.entries) == 2 and all(p is not None for p in pictures):
            self.wipe.set_pictures(pictures[0], pictures[1], self._name(0), self._name(1))
        self.lock, self._runs = None, []
        self.player.set_enabled(False)
        self.player.step_label.setText("reading the runs' steps…")
        paths = {i: e.run_path for i, e in enumerate(self.entries) if e.run_path is not None and e.run_path.is_file()}
        task = BackgroundTask(lambda: _read_runs(paths), "Cannot read the runs' steps: ", self)
        task.done.connect(lambda results, entries=self.entries: self._use_runs(entries, results))
        task.failed.connect(self.player.step_label.setText)
        self._task = task.start()

    def _use_runs(self, entries: list[LibraryEntry], results: dict[int, RunResult]) -> None:
        """The entries' runs are read: put every one with steps on the player."""
        if entries is not self.entries:
            return  # other entries were chosen meanwhile
        self._runs = [i for i in sorted(results) if len(results[i])]
        if not self._runs:
            self.player.step_label.setText("these runs were saved without their steps: final pictures only")
            return
        self.lock = StepLock([results[i] for i in self._runs])
        first_points = None
        for i in self._runs:
            if results[i].is_points:  # every 2-D column on the same axes
                pane = self.views[i].points
                if first_points is None:
                    first_points = pane
                else:
                    pane.setXLink(first_points)
                    pane.setYLink(first_points)
        self.player.set_count(len(self.lock), follow=True)
        self.player.set_elapsed(self.lock.elapsed())
        self.player.set_enabled(len(self.lock) > 1)
        self.show_position(self.player.index())
        self.steps_ready.emit()

    def show_position(self, position: int) -> None:
        """Every run at the step of shared `position` (x_t or x̂0): its column, and the wipe."""
        lock = self.lock
        if lock is None or not 0 <= position < len(lock):
            return
        view = self.view.currentData()
        shown = {}
        for j, i in enumerate(self._runs):
            result = lock.results[j]
            frame = lock.frames[j].frame(lock.step(j, position))
            value = frame.xt if view == "xt" else frame.x0
            if result.is_points:
                self.views[i].show_points(value, class_colors(result.request))
            else:
                value = np.zeros_like(frame.xt) if value is None else value
                self.views[i].show_picture(value)
            shown[i] = value
        if len(self.entries) == 2 and set(shown) == {0, 1}:
            a, b = lock.results[0], lock.results[1]
            if a.is_points and b.is_points:
                self.wipe.set_points(shown[0], shown[1], (class_colors(a.request), class_colors(b.request)),
                                     self._name(0), self._name(1))
            elif not a.is_points and not b.is_points:
                self.wipe.set_pictures(shown[0], shown[1], self._name(0), self._name(1))
        reference = lock.results[lock.reference]
        timesteps = reference.track("timestep")
        timestep = timesteps[position] if position < len(timesteps) else None
        self.player.step_label.setText(step_text(position, len(lock) - 1, timestep, lock.noise_level(position)))
        self.position_shown.emit(position)

    def show_image_file(self, path: str | Path, title: str | None = None) -> None:
        """Add (or refresh) a tab showing a picture file; ValueError if it cannot be read."""
        path = Path(path)
        pixmap = to_pixmap(read_picture(path))
        label = self.picture_tabs.get(path)
        if label is None:
            label = PictureLabel()
            self.picture_tabs[path] = label
            self.tabs.addTab(label, title or path.stem)
        label.set_source(pixmap)
        self.tabs.setCurrentWidget(label)

    def _name(self, i: int) -> str:
        return f"#{i + 1} {self.entries[i].title}"

    def _column(self, i: int, entry: LibraryEntry, picture: np.ndarray | None, note: str) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        caption = QLabel(f"<b>#{i + 1}</b> {entry.title}")
        caption.setWordWrap(True)
        caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        changes = [f"{NAMES.get(k, k)} = {format_value(self.flats[i].get(k))}" for k in setting_keys(self.flats)
                   if k in self.differing]
        detail = QLabel(" · ".join(changes) if changes else "identical settings")
        detail.setWordWrap(True)
        detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        detail.setStyleSheet(f"background: {HIGHLIGHT.name()}; padding: 2px;" if changes else "")
        view = RunView()
        view.setMinimumSize(160, 160)
        view.show_picture(picture)
        self.views.append(view)
        layout.addWidget(caption)
        layout.addWidget(view, 1)
        layout.addWidget(detail)
        if note:
            warn = QLabel(note)
            warn.setStyleSheet("color: #a33;")
            layout.addWidget(warn)
        return box

    def _fill_table(self) -> None:
        flats = self.flats
        keys = setting_keys(flats)
        if self.only_diff.isChecked():
            keys = [k for k in keys if k in self.differing]
        self.table.clear()
        self.table.setColumnCount(len(flats))
        self.table.setRowCount(len(keys))
        self.table.setHorizontalHeaderLabels([f"#{i + 1}" for i in range(len(flats))])
        self.table.setVerticalHeaderLabels([NAMES.get(key, key) for key in keys])
        bold = QFont()
        bold.setBold(True)
        for r, key in enumerate(keys):
            for c, flat in enumerate(flats):
                item = QTableWidgetItem(format_value(flat.get(key)) if key in flat else "(not set)")
                item.setData(Qt.ItemDataRole.UserRole, key)
                if key in self.differing:
                    item.setBackground(QBrush(HIGHLIGHT))
                    item.setFont(bold)
                self.table.setItem(r, c, item)

    def highlighted_rows(self) -> list[str]:
        """The settings (keys) whose rows are highlighted (what the user sees as different)."""
        out = []
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.background().color() == HIGHLIGHT:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return out

    def _update_wipe_tab(self) -> None:
        two = len(self.entries) == 2
        self.tabs.setTabEnabled(self.wipe_index, two)
        self.tabs.setTabToolTip(self.wipe_index, "" if two else "The wipe view needs exactly two runs.")


def _read_runs(paths: dict[int, Path]) -> dict[int, RunResult]:
    """The run files that can be read (helper thread); one that cannot leaves its entry a picture."""
    out = {}
    for index, path in paths.items():
        try:
            out[index] = read_run(path)
        except ValueError:
            continue
    return out
