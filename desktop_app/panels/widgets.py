"""Small helpers the panels share: quiet setters, combo boxes whose items can be disabled, and spin
boxes that refuse an out-of-range entry with a message instead of clamping it silently."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel, QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QDoubleSpinBox, QLabel, QSpinBox, QToolTip, QWidget

from ..limits import Limit


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


# --- spin boxes with stated limits ---------------------------------------------------------------

def _typed_number(box: QAbstractSpinBox, text: str) -> int | float | None:
    """The number typed in `box` (prefix and suffix removed), or None when the text is not one."""
    body = text.removeprefix(box.prefix()).removesuffix(box.suffix()).strip().replace("−", "-")
    if body.lstrip("+-").isdigit():
        return int(body)  # exactly, however long
    value, ok = box.locale().toDouble(body)
    if not ok:
        try:
            value = float(body)
        except (ValueError, OverflowError):
            return None
    return value


def _validate(box: QAbstractSpinBox, result: Any, text: str) -> Any:
    """Let a number outside the range be typed (Intermediate): `_fixup` then refuses it out loud."""
    state = result[0] if isinstance(result, tuple) else result
    if state == QValidator.State.Invalid and _typed_number(box, text) is not None:
        return QValidator.State.Intermediate
    return result


def _fixup(box: Any, text: str) -> str:
    """Editing ended on an out-of-range number: say why; Qt then restores the value before the edit."""
    value = _typed_number(box, text)
    if value is not None:
        message = box.limit.problem(value) or f"{box.limit.name} must be from {box.limit.describe()}."
        QToolTip.showText(box.mapToGlobal(box.rect().bottomLeft()), message, box)  # at the box, at once
        box.refused.emit(message)  # and in the panel's note, until the next change
    return text


def _configure(box: Any, limit: Limit) -> None:
    box.limit = limit
    box.setRange(limit.low, limit.high)
    box.setKeyboardTracking(False)  # a typed number counts when Enter is pressed or the box is left
    box.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToPreviousValue)


class LimitedSpinBox(QSpinBox):
    """A whole-number box over `limit`; `refused(message)` when an out-of-range number was typed."""

    refused = Signal(str)

    def __init__(self, limit: Limit, parent: QWidget | None = None, **kwargs: Any):
        super().__init__(parent, **kwargs)
        _configure(self, limit)

    def validate(self, text: str, pos: int) -> Any:  # noqa: D102 (Qt API)
        return _validate(self, super().validate(text, pos), text)

    def fixup(self, text: str) -> str:  # noqa: D102 (Qt API)
        return _fixup(self, text)


class LimitedDoubleSpinBox(QDoubleSpinBox):
    """A number box over `limit` (its decimals); `refused(message)` when an out-of-range number was typed."""

    refused = Signal(str)

    def __init__(self, limit: Limit, parent: QWidget | None = None, **kwargs: Any):
        super().__init__(parent, decimals=limit.decimals, **kwargs)
        _configure(self, limit)

    def validate(self, text: str, pos: int) -> Any:  # noqa: D102 (Qt API)
        return _validate(self, super().validate(text, pos), text)

    def fixup(self, text: str) -> str:  # noqa: D102 (Qt API)
        return _fixup(self, text)


def with_range(tip: str, limit: Limit) -> str:
    """A tooltip that states the range: "<tip> (range 0 to 1000)"."""
    return f"{tip} (range {limit.describe()})"


class NoteLabel(QLabel):
    """A panel's one-line message for refused entries (red, hidden while empty)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet("color: #a33;")
        self.hide()

    def say(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))
