"""Prompt panel, for models guided by text or sampling any image size (Stable Diffusion): prompt, negative
prompt (both multi-line) and the image width and height in pixels (multiples of 8). Hidden for models
that use none of them; a control that does not apply is disabled and says why."""
from __future__ import annotations

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QSpinBox, QWidget

from ..session import MAX_SIDE, Session
from .widgets import enable, set_quietly

SIDE_STEP = 8
PROMPT_TIP = "What the image should show: the conditional pass of classifier-free guidance"
NEGATIVE_TIP = ("What it should not show: the unconditional pass of classifier-free guidance "
                "(and what unguided sampling follows); empty is the empty prompt")
SIZE_TIP = "Image size in pixels, a multiple of 8 (the model was trained near its own size)"


class SideSpinBox(QSpinBox):
    """Pixels in steps of 8: a typed value that is not a multiple of 8 is not taken until it is one, and
    on leaving the box it becomes the nearest one (visibly)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, minimum=SIDE_STEP, maximum=MAX_SIDE, singleStep=SIDE_STEP, suffix=" px")
        self.setKeyboardTracking(False)

    def validate(self, text: str, pos: int) -> object:
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and self.valueFromText(text) % SIDE_STEP:
            state = QValidator.State.Intermediate
        return state, text, pos

    def fixup(self, text: str) -> str:
        digits = "".join(ch for ch in text if ch.isdigit())
        value = int(digits) if digits else self.value()
        value = min(MAX_SIDE, max(SIDE_STEP, SIDE_STEP * ((value + SIDE_STEP // 2) // SIDE_STEP)))
        return self.textFromValue(value)


def _set_text(edit: QPlainTextEdit, text: str) -> None:
    """Show `text` without a change signal, leaving an edit in progress (same text) alone."""
    if edit.toPlainText() != text:
        edit.blockSignals(True)
        edit.setPlainText(text)
        edit.blockSignals(False)


def _lines_high(edit: QPlainTextEdit, lines: int) -> None:
    edit.setFixedHeight(lines * edit.fontMetrics().lineSpacing() + 14)


class PromptPanel(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__("Prompt", parent)
        self.session = session
        self.prompt = QPlainTextEdit(placeholderText="e.g. a watercolour fox in the snow")
        _lines_high(self.prompt, 3)
        self.prompt.textChanged.connect(lambda: session.update(prompt=self.prompt.toPlainText()))
        self.negative = QPlainTextEdit(placeholderText="e.g. blurry, low quality")
        _lines_high(self.negative, 2)
        self.negative.textChanged.connect(lambda: session.update(negative_prompt=self.negative.toPlainText()))
        self.width = SideSpinBox()
        self.width.valueChanged.connect(lambda v: session.update(width=int(v)))
        self.height = SideSpinBox()
        self.height.valueChanged.connect(lambda v: session.update(height=int(v)))

        size_row = QHBoxLayout()
        size_row.addWidget(self.width, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height, 1)
        form = QFormLayout(self)
        form.addRow("Prompt", self.prompt)
        form.addRow("Negative", self.negative)
        form.addRow("Size", size_row)
        session.subscribe(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        s, caps = self.session.settings, self.session.caps
        self.setVisible(caps is not None and (caps.takes_prompt or caps.size_choice))
        reasons = self.session.availability()
        _set_text(self.prompt, s.prompt)
        _set_text(self.negative, s.negative_prompt)
        enable(self.prompt, reasons["prompt"], PROMPT_TIP)
        enable(self.negative, reasons["negative_prompt"], NEGATIVE_TIP)
        fixed = caps.image_size if caps is not None and not caps.size_choice else None
        set_quietly(self.width, fixed[0] if fixed else s.width)
        set_quietly(self.height, fixed[1] if fixed else s.height)
        for box in (self.width, self.height):
            enable(box, reasons["size"], SIZE_TIP)
