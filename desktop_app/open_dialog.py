"""The one "Open model…" dialog for every family: model file or folder, optional classifier, preset or
flags, and a live summary of what the load will use (core.model_plan), before anything is loaded.

The summary says, for each setting, its value and where it comes from (the weights, your flags, a preset,
a default); a default the weights cannot confirm is marked with a warning; the sampling flags that will
set the panels are listed, and so are the flags that change nothing. Open is enabled only for a plan
without an error, and the error says what to change.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

REPLAN_MS = 250  # re-plan this long after the last keystroke
MODEL_FILTER = "Model files (*.safetensors *.pt *.pth *.ckpt *.bin);;All files (*)"
CLASSIFIER_FILTER = "Classifier files (*.pt *.pth *.safetensors);;All files (*)"
MODEL_HINT = ("A diffusers pipeline folder (with model_index.json), a single-file Stable Diffusion .safetensors, "
              "a Guidance Studio .safetensors bundle, or a guided-diffusion .pt checkpoint.")
CLASSIFIER_HINT = "Optional. A noise-aware classifier for classifier guidance (guided-diffusion); leave empty for none."
FLAGS_PLACEHOLDER = ("Optional guided-diffusion flags, as in its README, e.g.\n"
                     'MODEL_FLAGS="--attention_resolutions 32,16,8 --class_cond True --image_size 64 …"\n'
                     "Sampling flags such as --timestep_respacing ddim25 --classifier_scale 3 set the panels.")
WARN_COLOUR = "#a15c00"
ERROR_COLOUR = "#b00020"


def plan_html(plan: Any) -> str:
    """A LoadPlan as the dialog's summary: settings with their sources, warnings, panel settings, errors."""
    esc = html.escape
    if not plan.family:
        return f'<p style="color:{ERROR_COLOUR}"><b>Cannot open:</b> {esc(plan.error or "")}</p>'
    out = [f"<p><b>{esc(plan.kind.capitalize())}</b> — {esc(Path(plan.model_path).name)}</p>"]
    if plan.error:  # first, where it is seen without scrolling
        out.append(f'<p style="color:{ERROR_COLOUR}"><b>Cannot open:</b> {esc(plan.error)}</p>')
    elif plan.warnings:
        n = len(plan.warnings)
        out.append(f'<p style="color:{WARN_COLOUR}">⚠ {n} setting{"s" if n > 1 else ""} below '
                   f'{"are defaults" if n > 1 else "is a default"} the weights cannot confirm; samples are wrong '
                   "if the model was trained otherwise. Give the flags (or a preset) to be sure.</p>")
    if plan.settings:
        out.append('<table cellspacing="0" cellpadding="2">')
        part = None
        for s in plan.settings:
            if s.part != part:
                part = s.part
                out.append(f'<tr><td colspan="3"><i>{esc(part.capitalize())}</i></td></tr>')
            out.append(f"<tr><td>{esc(s.name)}</td><td><b>{esc(s.value)}</b></td>"
                       f'<td style="color:gray">from {esc(s.source)}</td></tr>')
            if s.warning:
                out.append(f'<tr><td></td><td colspan="2" style="color:{WARN_COLOUR}">⚠ {esc(s.warning)}</td></tr>')
        out.append("</table>")
    if plan.applied:
        applied = "<br>".join(map(esc, plan.applied))
        out.append(f"<p><b>Set in the panels when the model opens:</b><br>{applied}</p>")
    if plan.unused:
        out.append("<p><b>Not used:</b><br>" + "<br>".join(map(esc, plan.unused)) + "</p>")
    return "".join(out)


def _path_row(edit: QLineEdit, *buttons: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    for button in buttons:
        row.addWidget(button)
    return row


class OpenModelDialog(QDialog):
    """Fill in the model (and classifier, flags); `plan` is the LoadPlan of what is filled in.

    Signals: `plan_changed(LoadPlan)` after each re-plan. Accepting the dialog (Open) leaves the final
    plan in `plan`.
    """

    plan_changed = Signal(object)

    def __init__(self, start_folder: str = "", precision: str = "fp32", parent: QWidget | None = None):
        """precision: what the model will load in (the memory a pipeline needs is stated for it)."""
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.start_folder = start_folder
        self.precision = precision
        self.plan: Any = None
        self._shapes: dict[Any, Any] = {}  # tensor shapes by file, so edits of the flags re-read nothing
        self._timer = QTimer(self, singleShot=True, interval=REPLAN_MS)
        self._timer.timeout.connect(self.replan)

        self.model_edit = QLineEdit(placeholderText="Choose a file or a pipeline folder", clearButtonEnabled=True)
        self.model_file_button = QPushButton("File…")
        self.model_folder_button = QPushButton("Folder…")
        self.model_file_button.setToolTip("A .safetensors, .pt or .ckpt model file")
        self.model_folder_button.setToolTip("A diffusers pipeline folder (the one holding model_index.json)")
        self.classifier_edit = QLineEdit(placeholderText="None (no classifier guidance)", clearButtonEnabled=True)
        self.classifier_edit.setToolTip(CLASSIFIER_HINT)
        self.classifier_button = QPushButton("File…")
        self.preset = QComboBox()
        self.preset.addItem("Choose a preset to fill in its flags…", "")
        self.flags = QPlainTextEdit(placeholderText=FLAGS_PLACEHOLDER)
        self.flags.setFixedHeight(6 * self.flags.fontMetrics().lineSpacing() + 12)  # six lines, then it scrolls
        self.flags.setToolTip("guided-diffusion's model, diffusion and sampling flags; "
                              "a README line can be pasted whole")
        self.summary = QTextBrowser()
        self.summary.setMinimumHeight(300)
        self.summary.setOpenLinks(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        self.open_button = self.buttons.button(QDialogButtonBox.StandardButton.Open)

        from core.guided_diffusion.presets import MODEL_PRESETS

        for name in MODEL_PRESETS:
            self.preset.addItem(name, MODEL_PRESETS[name])
        self.model_file_button.clicked.connect(self._choose_model_file)
        self.model_folder_button.clicked.connect(self._choose_model_folder)
        self.classifier_button.clicked.connect(self._choose_classifier)
        self.preset.activated.connect(self._use_preset)
        for edit in (self.model_edit, self.classifier_edit):
            edit.textChanged.connect(self._timer.start)
        self.flags.textChanged.connect(self._timer.start)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)

        model_hint = QLabel(MODEL_HINT, wordWrap=True)
        model_hint.setStyleSheet("color: gray")
        form = QFormLayout()
        form.addRow("Model", _path_row(self.model_edit, self.model_file_button, self.model_folder_button))
        form.addRow("", model_hint)
        form.addRow("Classifier (optional)", _path_row(self.classifier_edit, self.classifier_button))
        form.addRow("Preset", self.preset)
        form.addRow("Flags (optional)", self.flags)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("<b>What will be used</b>"))
        layout.addWidget(self.summary, 1)
        layout.addWidget(self.buttons)
        self.resize(780, 760)
        self.replan()

    # --- filling in --------------------------------------------------------------------------------

    def set_model(self, path: str, classifier: str = "", flags: str = "") -> None:
        """Fill the form (as the user would) and re-plan at once."""
        self.model_edit.setText(path)
        self.classifier_edit.setText(classifier)
        self.flags.setPlainText(flags)
        self.replan()

    def _folder(self) -> str:
        current = self.model_edit.text().strip()
        return str(Path(current).parent) if current else self.start_folder

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", self._folder(), MODEL_FILTER)
        if path:
            self.model_edit.setText(path)

    def _choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Pipeline folder (with model_index.json)", self._folder())
        if path:
            self.model_edit.setText(path)

    def _choose_classifier(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Noise-aware classifier (optional)", self._folder(),
                                              CLASSIFIER_FILTER)
        if path:
            self.classifier_edit.setText(path)

    def _use_preset(self, index: int) -> None:
        text = self.preset.itemData(index)
        if text:
            self.flags.setPlainText(text)
        self.preset.setCurrentIndex(0)

    # --- the plan ----------------------------------------------------------------------------------

    def replan(self) -> None:
        """Plan what is filled in now and show it (cheap: file shapes are read once and cached)."""
        from core.model_plan import plan_open

        self._timer.stop()
        path = self.model_edit.text().strip()
        if not path:
            self.plan = None
            self.summary.setHtml(f"<p style='color:gray'>{html.escape(MODEL_HINT)}</p>")
            self.open_button.setEnabled(False)
            self.open_button.setToolTip("Choose a model first.")
            self.plan_changed.emit(None)
            return
        self.plan = plan_open(path, self.classifier_edit.text().strip() or None, self.flags.toPlainText(),
                              shapes=self._shapes, precision=self.precision)
        self.summary.setHtml(plan_html(self.plan))
        self.open_button.setEnabled(self.plan.ok)
        self.open_button.setToolTip(self.plan.error or "Load this model")
        takes = self.plan.accepts_classifier or not self.plan.family
        reason = None if takes else f"A {self.plan.kind} takes no classifier."
        for widget in (self.classifier_edit, self.classifier_button):
            widget.setEnabled(takes or bool(self.classifier_edit.text()))
            widget.setToolTip(reason or CLASSIFIER_HINT)
        self.plan_changed.emit(self.plan)

    def summary_text(self) -> str:
        """The summary as plain text (what the user reads)."""
        return self.summary.toPlainText()

    def _accept(self) -> None:
        self.replan()
        if self.plan is not None and self.plan.ok:
            self.accept()
