"""Small helpers the panels share: quiet setters and combo boxes whose items can be disabled."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QWidget


def set_quietly(widget: QWidget, value: Any) -> None:
    """Show `value` without emitting change signals (and without touching an unchanged widget)."""
    widget.blockSignals(True)
    try:
        if isinstance(widget, QComboBox):
            if widget.isEditable():
                if widget.currentText() != str(value):
                    widget.setEditText(str(value))
            else:
                index = widget.findData(value)
                if index >= 0 and index != widget.currentIndex():
                    widget.setCurrentIndex(index)
        elif isinstance(widget, QAbstractSpinBox):
            if widget.value() != value:
                widget.setValue(value)
        elif hasattr(widget, "setChecked"):
            widget.setChecked(bool(value))
    finally:
        widget.blockSignals(False)


def enable(widget: QWidget, reason: str | None, tooltip: str = "") -> None:
    """Enable `widget` when `reason` is None; otherwise disable it and say why in its tooltip."""
    widget.setEnabled(reason is None)
    widget.setToolTip(tooltip if reason is None else reason)


class ItemCombo(QComboBox):
    """A combo box of (label, data) items where single items can be disabled with a reason."""

    def __init__(self, items: list[tuple[str, Any]] = (), parent: QWidget | None = None):
        super().__init__(parent)
        self.setModel(QStandardItemModel(self))
        self.set_items(items)

    def set_items(self, items: list[tuple[str, Any]]) -> None:
        self.blockSignals(True)
        self.model().clear()
        for label, data in items:
            item = QStandardItem(label)
            item.setData(data, Qt.ItemDataRole.UserRole)
            self.model().appendRow(item)
        self.blockSignals(False)

    def set_item_reason(self, data: Any, reason: str | None) -> None:
        """Disable the item holding `data` (tooltip: `reason`), or enable it when reason is None."""
        index = self.findData(data)
        if index < 0:
            return
        item = self.model().item(index)
        item.setEnabled(reason is None)
        item.setToolTip(reason or "")

    def item_enabled(self, data: Any) -> bool:
        index = self.findData(data)
        return index >= 0 and self.model().item(index).isEnabled()

    def item_reason(self, data: Any) -> str:
        index = self.findData(data)
        return self.model().item(index).toolTip() if index >= 0 else ""
