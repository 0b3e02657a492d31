"""The library gallery: thumbnails of recorded runs, filter by model, reopen, compare, delete.

A thin view over `library.Library`: it reads entries, and writes only through `Library.delete`.
Reopening and comparing are requests to the window (signals); the gallery never touches the session.
"""
from __future__ import annotations

import time
from typing import Callable

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.runs import RunResult

from ..qtpix import png_pixmap
from .store import GroupEntry, Library, LibraryEntry, SkippedRow

ALL_MODELS = "All models"
ENTRY_ID = Qt.ItemDataRole.UserRole + 1
GROUP_ID = Qt.ItemDataRole.UserRole + 2  # items of sweeps carry this instead
STATES = (("All runs", None), ("Finished", True), ("Stopped early", False))  # label, `completed` filter
BADGE_RED = QColor(200, 40, 40)


def _ask_yes_no(parent: QWidget, text: str) -> bool:
    answer = QMessageBox.question(parent, "Guidance Studio", text)
    return answer == QMessageBox.StandardButton.Yes


class GalleryWidget(QWidget):
    """Icon grid of library entries, newest first.

    reopen_requested(LibraryEntry): the user wants this run back on screen, settings included.
    compare_requested(list[LibraryEntry]): two or more entries to show side by side.
    """

    reopen_requested = Signal(object)
    reopen_group_requested = Signal(object)  # GroupEntry: a sweep to show again as its grid
    compare_requested = Signal(list)

    # Replaced in tests; asks the user to confirm a deletion.
    confirm: Callable[[QWidget, str], bool] = staticmethod(_ask_yes_no)

    def __init__(self, library: Library, parent: QWidget | None = None):
        super().__init__(parent)
        self.library = library
        self.filter = QComboBox()
        self.filter.setToolTip("Show the runs of one model only")
        self.state = QComboBox()
        for label, _ in STATES:
            self.state.addItem(label)
        self.state.setToolTip("Show every run, only runs that finished, or only runs stopped before their last step")
        self.count = QLabel()
        self.model = QStandardItemModel(self)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(QSize(112, 112))
        self.view.setGridSize(QSize(136, 156))
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setWordWrap(True)
        self.view.setUniformItemSizes(True)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.reopen_button = QPushButton("Reopen")
        self.reopen_button.setToolTip("Show this run as it was (every step) and put its settings back into the panels")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Show the selected runs side by side (select two or more)")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Remove the selected runs and their saved files")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #a33;")

        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.state)
        top.addWidget(self.count)
        buttons = QHBoxLayout()
        for b in (self.reopen_button, self.compare_button, self.delete_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.message)

        self.filter.currentIndexChanged.connect(lambda _i: self._fill())
        self.state.currentIndexChanged.connect(lambda _i: self._fill())
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.view.doubleClicked.connect(lambda _index: self.reopen_selected())
        self.reopen_button.clicked.connect(self.reopen_selected)
        self.compare_button.clicked.connect(self.compare_selected)
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.refresh()

    # --- reading ---

    def refresh(self) -> None:
        """Reload the model list and the entries (keeps the current filter when it still exists)."""
        current = self.filter.currentText() or ALL_MODELS
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItems([ALL_MODELS, *self.library.models()])
        index = self.filter.findText(current)
        self.filter.setCurrentIndex(max(index, 0))
        self.filter.blockSignals(False)
        self._fill()

    def model_filter(self) -> str | None:
        text = self.filter.currentText()
        return None if text in ("", ALL_MODELS) else text

    def completed_filter(self) -> bool | None:
        """True: finished runs only, False: stopped ones only, None: all."""
        return STATES[self.state.currentIndex()][1]

    def set_completed_filter(self, completed: bool | None) -> None:
        self.state.setCurrentIndex([value for _, value in STATES].index(completed))

    def set_model_filter(self, model: str | None) -> None:
        index = self.filter.findText(model or ALL_MODELS)
        if index < 0:
            raise ValueError(f"The library has no runs of {model!r}.")
        self.filter.setCurrentIndex(index)

    def _ids(self, role: int) -> list[int]:
        values = (self.model.item(r).data(role) for r in range(self.model.rowCount()))
        return [v for v in values if v is not None]

    def entry_ids(self) -> list[int]:
        """The ids of the runs shown, in display order."""
        return self._ids(ENTRY_ID)

    def group_ids(self) -> list[int]:
        """The ids of the sweeps shown, in display order."""
        return self._ids(GROUP_ID)

    def _selected(self, role: int) -> list[int]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        values = (self.model.item(r).data(role) for r in rows)
        return [v for v in values if v is not None]

    def selected_entries(self) -> list[LibraryEntry]:
        return [self.library.get(entry_id) for entry_id in self._selected(ENTRY_ID)]

    def selected_groups(self) -> list[GroupEntry]:
        return [self.library.get_group(group_id) for group_id in self._selected(GROUP_ID)]

    def select_groups(self, ids: list[int]) -> None:
        """Select exactly the sweeps with these ids."""
        selection = self.view.selectionModel()
        selection.clearSelection()
        for row in range(self.model.rowCount()):
            if self.model.item(row).data(GROUP_ID) in ids:
                selection.select(self.model.index(row, 0), selection.SelectionFlag.Select)

    def select_ids(self, ids: list[int]) -> None:
        """Select exactly the entries with these ids (for tests and for the window)."""
        selection = self.view.selectionModel()
        selection.clearSelection()
        for row, entry_id in enumerate(self.entry_ids()):
            if entry_id in ids:
                selection.select(self.model.index(row, 0), selection.SelectionFlag.Select)

    def _fill(self) -> None:
        self.model.clear()
        entries = self.library.list(self.model_filter(), self.completed_filter())
        groups = self.library.groups(self.model_filter(), self.completed_filter())
        shown = [(e.created, e.id, _item(e)) for e in entries] + [(g.created, g.id, _group_item(g)) for g in groups]
        for *_, item in sorted(shown, key=lambda t: (t[0], t[1]), reverse=True):  # newest first
            self.model.appendRow(item)
        self._show_count()
        self._update_buttons()
        self.message.setText(_skipped_text(self.library.skipped))

    def _show_count(self) -> None:
        runs, sweeps = len(self.entry_ids()), len(self.group_ids())
        text = f"{runs} run{'s' if runs != 1 else ''}"
        self.count.setText(text + (f", {sweeps} sweep{'s' if sweeps != 1 else ''}" if sweeps else ""))

    def show_entry(self, entry: LibraryEntry) -> None:
        """Show a newly added entry at the top without reloading the others (cheap per run)."""
        if self.filter.findText(entry.model) < 0:  # a model new to the library: the filter list grows
            self.refresh()
            return
        if self.model_filter() not in (None, entry.model) or self.completed_filter() not in (None, entry.completed):
            return
        self.model.insertRow(0, _item(entry))
        self._show_count()
        self._update_buttons()

    def show_group(self, group: GroupEntry) -> None:
        """Show a newly saved sweep at the top."""
        if self.filter.findText(group.model) < 0:
            self.refresh()
            return
        if self.model_filter() not in (None, group.model) or self.completed_filter() not in (None, group.completed):
            return
        self.model.insertRow(0, _group_item(group))
        self._show_count()
        self._update_buttons()

    def _update_buttons(self) -> None:
        n = len(self.view.selectionModel().selectedIndexes())
        runs = len(self._selected(ENTRY_ID))
        self.reopen_button.setEnabled(n == 1)
        self.compare_button.setEnabled(runs >= 2 and runs == n)
        self.delete_button.setEnabled(n >= 1)

    # --- actions ---

    def record(self, result: RunResult) -> LibraryEntry:
        """Save and add a finished run, then show it. SaveError propagates to the caller."""
        entry = self.library.record(result)
        self.show_entry(entry)
        return entry

    def reopen_selected(self) -> None:
        groups = self.selected_groups()
        if len(groups) == 1 and not self.selected_entries():
            self.reopen_group_requested.emit(groups[0])
            return
        entries = self.selected_entries()
        if len(entries) != 1:
            return
        try:
            entries[0].request  # settings that no longer validate are refused here, with the reason
        except (TypeError, ValueError) as exc:
            self.message.setText(f"Cannot reopen this run: {exc}")
            return
        self.message.setText(_skipped_text(self.library.skipped))
        self.reopen_requested.emit(entries[0])

    def compare_selected(self) -> None:
        entries = self.selected_entries()
        if len(entries) >= 2:
            self.compare_requested.emit(entries)

    def delete_selected(self, confirm: bool = True) -> int:
        """Delete the selected runs and sweeps (after asking); returns how many were deleted."""
        entries, groups = self.selected_entries(), self.selected_groups()
        if not entries and not groups:
            return 0
        files = sum(len(e.files) for e in entries)
        parts = [f"{len(entries)} run{'s' if len(entries) != 1 else ''}"] if entries else []
        parts += [f"{len(groups)} sweep{'s' if len(groups) != 1 else ''} (every run in it)"] if groups else []
        text = f"Delete {' and '.join(parts)} from the library"
        text += f" and {files} saved file{'s' if files != 1 else ''}?" if entries else " and their saved files?"
        if confirm and not self.confirm(self, text):
            return 0
        for entry in entries:
            self.library.delete(entry.id)
        for group in groups:
            self.library.delete_group(group.id)
        self.refresh()
        return len(entries) + len(groups)


def _skipped_text(skipped: list[SkippedRow]) -> str:
    """One line naming the library rows that could not be shown, or ""."""
    if not skipped:
        return ""
    first = skipped[0]
    more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
    return (f"{len(skipped)} damaged run{'s' if len(skipped) > 1 else ''} not shown: "
            f"run {first.id}: {first.reason}{more}.")


def badged(pixmap: QPixmap, text: str, size: int = 128) -> QPixmap:
    """The thumbnail on a square canvas with a red band saying `text` along its bottom edge."""
    canvas = QPixmap(size, size)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    if not pixmap.isNull():
        shown = pixmap.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio)
        painter.drawPixmap((size - shown.width()) // 2, (size - shown.height()) // 2, shown)
    band = size // 5
    painter.fillRect(0, size - band, size, band, BADGE_RED)
    font = painter.font()
    font.setBold(True)
    font.setPixelSize(band * 2 // 3)
    painter.setFont(font)
    painter.setPen(QColor("white"))
    painter.drawText(QRect(0, size - band, size, band), Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return canvas


def _item(entry: LibraryEntry) -> QStandardItem:
    pixmap = png_pixmap(entry.thumbnail)
    if not entry.completed:
        pixmap = badged(pixmap, "STOPPED")
    item = QStandardItem(QIcon(pixmap), _caption(entry))
    item.setData(entry.id, ENTRY_ID)
    item.setToolTip(_tooltip(entry))
    item.setEditable(False)
    return item


def _group_item(group: GroupEntry) -> QStandardItem:
    pixmap = png_pixmap(group.thumbnail)
    if not group.completed:
        pixmap = badged(pixmap, "STOPPED")
    settings = group.settings
    values = ", ".join(str(v) for v in settings.get("values", []))
    seeds = len(settings.get("seeds", []))
    item = QStandardItem(QIcon(pixmap), f"sweep #{group.id} {group.model}\n{settings.get('parameter', '?')} = {values}"
                                        f" · {seeds} seed{'s' if seeds != 1 else ''}")
    item.setData(group.id, GROUP_ID)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(group.created))
    item.setToolTip("\n".join([str(settings.get("title", f"sweep of {group.model}")),
                               f"{when} · {len(group.cells)} runs" + ("" if group.completed else " · stopped early"),
                               "Reopen shows the grid with one scrubber for every cell."]))
    item.setEditable(False)
    return item


def _caption(entry: LibraryEntry) -> str:
    g = entry.settings.get("guidance", {})
    kind = g.get("kind", "none")
    detail = {"classifier": f"s={g.get('scale', 0):g}", "cfg": f"w={g.get('weight', 0):g}",
              "both": f"w={g.get('weight', 0):g}, s={g.get('scale', 0):g}"}.get(kind, "unguided")
    stopped = " (stopped)" if not entry.completed else ""
    return f"#{entry.id} {entry.model}\n{detail} · seed {entry.settings.get('seed', 0)}{stopped}"


def _tooltip(entry: LibraryEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created))
    s = entry.settings
    return "\n".join([
        entry.title, f"{s.get('sampler', '?')} · steps {s.get('steps', '?')} · batch {s.get('batch', '?')}",
        f"{when} · {entry.device or 'unknown device'} · {entry.seconds:.1f} s"
        + ("" if entry.completed else " · stopped early"),
        f"{len(entry.files)} file(s): {entry.files[0].parent}" if entry.files else "no saved files",
    ])
