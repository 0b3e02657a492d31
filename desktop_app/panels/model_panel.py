"""Model panel: built-in models, "Open model…", device and precision."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..session import DEVICES, PRECISIONS, ModelCaps, Session
from .widgets import ItemCombo, enable, set_quietly

OPEN_TIP = ("Open a diffusers pipeline folder, a Stable Diffusion .safetensors, a Guidance Studio bundle or a "
            "guided-diffusion .pt checkpoint (with an optional classifier and flags)")
DEVICE_LABELS = {"auto": "Auto (best present)", "cuda": "CUDA GPU", "mps": "Apple MPS", "cpu": "CPU"}


class ModelPanel(QGroupBox):
    """Lists models; emits `model_chosen(key)` (a built-in name or a file path) when the user picks
    one, `open_requested()` for the file dialog, `reload_requested()` after device/precision change."""

    model_chosen = Signal(str)
    open_requested = Signal()
    reload_requested = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.session = session
        self.models = QListWidget()
        self.models.setMinimumHeight(70)
        self.models.setMaximumHeight(120)
        self.models.itemActivated.connect(self._on_item)
        self.models.itemClicked.connect(self._on_item)
        self.open_button = QPushButton("Open model…")
        self.open_button.setToolTip(OPEN_TIP)
        self.open_button.clicked.connect(self.open_requested)
        self.device = ItemCombo([(DEVICE_LABELS[d], d) for d in DEVICES])
        self.device.activated.connect(lambda _: self._changed(device=self.device.currentData()))
        self.precision = ItemCombo([(p, p) for p in PRECISIONS])
        self.precision.activated.connect(lambda _: self._changed(precision=self.precision.currentData()))
        self.info = QLabel("Loading the engine…")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        layout = QVBoxLayout(self)
        layout.addWidget(self.models)
        layout.addWidget(self.open_button)
        layout.addLayout(form)
        layout.addWidget(self.info)
        session.subscribe(lambda _: self.refresh())
        self.refresh()

    def set_models(self, models: list[tuple[str, str, str]]) -> None:
        """(key, label, tooltip) rows: key is a built-in name or a file path."""
        self.models.blockSignals(True)
        self.models.clear()
        for key, label, tip in models:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(tip)
            self.models.addItem(item)
        self.models.blockSignals(False)
        self.refresh()

    def keys(self) -> list[str]:
        return [self.models.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.models.count())]

    def select_key(self, key: str) -> None:
        for i in range(self.models.count()):
            if self.models.item(i).data(Qt.ItemDataRole.UserRole) == key:
                self.models.blockSignals(True)
                self.models.setCurrentRow(i)
                self.models.blockSignals(False)

    def _on_item(self, item: QListWidgetItem) -> None:
        self.model_chosen.emit(item.data(Qt.ItemDataRole.UserRole))

    def _changed(self, **change: str) -> None:
        before = (self.session.settings.device, self.session.settings.precision)
        self.session.update(**change)
        if (self.session.settings.device, self.session.settings.precision) != before:
            self.reload_requested.emit()

    def set_busy(self, busy: bool) -> None:
        """While a run or a load is in progress the model cannot change."""
        reason = "Wait until the current run or load has finished." if busy else None
        enable(self.models, reason, "Click a model to load it")
        enable(self.open_button, reason, OPEN_TIP)
        for combo in (self.device, self.precision):
            combo.setEnabled(not busy)
        if busy:
            self.device.setToolTip(reason)
            self.precision.setToolTip(reason)
        else:
            self.refresh()

    def refresh(self) -> None:
        s = self.session
        reasons = s.availability()
        for d in DEVICES:
            self.device.set_item_reason(d, reasons[f"device:{d}"])
        for p in PRECISIONS:
            self.precision.set_item_reason(p, reasons[f"precision:{p}"])
        set_quietly(self.device, s.settings.device)
        set_quietly(self.precision, s.settings.precision)
        self.device.setToolTip(f"Sampling runs on {s.resolved_device().upper()}; present: {', '.join(s.devices)}")
        fp_only = reasons["precision:fp16"]
        self.precision.setToolTip(fp_only or "Half precision is faster on a GPU; fp32 is exact.")
        caps = s.caps
        if caps is not None:
            self.info.setText(_describe(caps))

    def show_message(self, text: str) -> None:
        self.info.setText(text)


def _describe(caps: ModelCaps) -> str:
    if caps.is_points:
        kind = "2-D points"
    elif caps.is_latent and caps.image_size is not None:
        width, height = caps.image_size
        kind = f"{width}×{height} images via {'×'.join(str(d) for d in caps.data_shape)} latents"
    else:
        kind = "images " + "×".join(str(d) for d in caps.data_shape)
    parts = [f"<b>{caps.name}</b>: {kind}"]
    if caps.takes_prompt:
        parts.append("guided by a prompt (CFG ✓)")
    else:
        if caps.num_classes:
            parts.append(f"{caps.num_classes} classes")
        parts.append("classifier ✓" if caps.has_classifier else "no classifier")
        parts.append("null label ✓ (CFG)" if caps.null_label else "no null label")
    if caps.schedule:
        parts.append(caps.schedule)
    text = ", ".join(parts)
    return text + (f"<br><small>{caps.description}</small>" if caps.description else "")
