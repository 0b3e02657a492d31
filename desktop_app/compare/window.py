"""Compare window: library entries side by side with differing settings highlighted, a two-way wipe,
and any picture file (e.g. the metrics trade-off plot). The diff itself is `compare.differing_keys`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..library.store import LibraryEntry
from ..qtpix import fitted, read_picture, to_pixmap
from .diff import differing_keys, effective_settings, format_value, setting_keys, wipe

HIGHLIGHT = QColor(255, 236, 140)


class PictureLabel(QLabel):
    """Shows a pixmap scaled to fit the label, re-scaled when the label is resized."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(96, 96)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._source = None

    def set_source(self, pixmap) -> None:
        self._source = pixmap
        self._rescale()

    def source(self):
        return self._source

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._source is not None and not self._source.isNull():
            self.setPixmap(fitted(self._source, self.size() - QSize(4, 4)))


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


class WipeView(QWidget):
    """Two pictures overlaid: left of the slider from A, right of it from B."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.picture = PictureLabel()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 1000)
        self.slider.setValue(500)
        self.slider.setToolTip("Drag to move the boundary between the two runs")
        self.caption = QLabel()
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.slider)
        self._a = self._b = None
        self.slider.valueChanged.connect(lambda _v: self._update())

    def set_pictures(self, a: np.ndarray, b: np.ndarray, left: str, right: str) -> None:
        self._a, self._b = a, b
        self.caption.setText(f"◀ {left}   |   {right} ▶")
        self._update()

    def position(self) -> float:
        return self.slider.value() / 1000.0

    def composite(self) -> np.ndarray | None:
        if self._a is None or self._b is None:
            return None
        return wipe(self._a, self._b, self.position())

    def _update(self) -> None:
        picture = self.composite()
        if picture is not None:
            self.picture.set_source(to_pixmap(picture))


class CompareWindow(QWidget):
    """Side by side, wipe (exactly two entries) and picture-file tabs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare runs")
        self.entries: list[LibraryEntry] = []
        self.flats: list[dict] = []
        self.differing: set[str] = set()
        self.tabs = QTabWidget()

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
        split.setSizes([460, 240])
        self.columns.setMinimumHeight(300)
        self.tabs.addTab(split, "Side by side")

        self.wipe = WipeView()
        self.wipe_index = self.tabs.addTab(self.wipe, "Wipe")
        self.picture_tabs: dict[Path, PictureLabel] = {}
        self.empty = QLabel("Select two or more runs in the library and press Compare.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.columns_layout.addWidget(self.empty)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.resize(1100, 750)
        self._update_wipe_tab()

    # --- content ---

    def set_entries(self, entries: list[LibraryEntry]) -> None:
        """Show these entries (at least one); differing settings are highlighted."""
        self.entries = list(entries)
        self.flats = [effective_settings(e.flat_settings()) for e in self.entries]
        flats = self.flats
        self.differing = differing_keys(flats)
        while self.columns_layout.count():
            widget = self.columns_layout.takeAt(0).widget()
            if widget is not None and widget is not self.empty:
                widget.deleteLater()
        self.empty.setVisible(not self.entries)
        if not self.entries:
            self.columns_layout.addWidget(self.empty)
        pictures = []
        for i, entry in enumerate(self.entries):
            picture, note = entry_picture(entry)
            pictures.append(picture)
            self.columns_layout.addWidget(self._column(i, entry, picture, note), 1)
        self._fill_table()
        self._update_wipe_tab()
        if len(self.entries) == 2 and all(p is not None for p in pictures):
            self.wipe.set_pictures(pictures[0], pictures[1], self._name(0), self._name(1))

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
        changes = [f"{k} = {format_value(self.flats[i].get(k))}" for k in setting_keys(self.flats)
                   if k in self.differing]
        detail = QLabel(" · ".join(changes) if changes else "identical settings")
        detail.setWordWrap(True)
        detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        detail.setStyleSheet(f"background: {HIGHLIGHT.name()}; padding: 2px;" if changes else "")
        view = PictureLabel()
        view.setMinimumSize(160, 160)
        if picture is not None:
            view.set_source(to_pixmap(picture))
        else:
            view.setText("no picture")
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
        self.table.setVerticalHeaderLabels(keys)
        bold = QFont()
        bold.setBold(True)
        for r, key in enumerate(keys):
            for c, flat in enumerate(flats):
                item = QTableWidgetItem(format_value(flat.get(key)) if key in flat else "(not set)")
                if key in self.differing:
                    item.setBackground(QBrush(HIGHLIGHT))
                    item.setFont(bold)
                self.table.setItem(r, c, item)

    def highlighted_rows(self) -> list[str]:
        """The setting names whose rows are highlighted (what the user sees as different)."""
        out = []
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.background().color() == HIGHLIGHT:
                out.append(self.table.verticalHeaderItem(r).text())
        return out

    def _update_wipe_tab(self) -> None:
        two = len(self.entries) == 2
        self.tabs.setTabEnabled(self.wipe_index, two)
        self.tabs.setTabToolTip(self.wipe_index, "" if two else "The wipe view needs exactly two runs.")
