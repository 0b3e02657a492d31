"""Guidance panel: type, target class by name, classifier scale s, CFG strength as the weight w or as
γ = s_cfg = 1 + w (diffusers' guidance_scale; both boxes are editable and show the same setting), window,
and what the next run records for the guidance views (maps, the unguided twin)."""
from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QWidget

from .. import limits
from ..session import GUIDANCE_LABELS, Session
from .widgets import ItemCombo, LimitedDoubleSpinBox, NoteLabel, enable, set_quietly, with_range


class GuidancePanel(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__("Guidance", parent)
        self.session = session
        self.kind = ItemCombo([(label, kind) for kind, label in GUIDANCE_LABELS.items()])
        self.kind.activated.connect(lambda _: session.update(guidance=self.kind.currentData()))
        self.target = ItemCombo([])
        self.target.activated.connect(lambda _: session.update(class_index=int(self.target.currentData())))
        self.scale = LimitedDoubleSpinBox(limits.SCALE, singleStep=0.5)
        self.scale.valueChanged.connect(lambda v: session.update(scale=float(v)))
        self.weight = LimitedDoubleSpinBox(limits.WEIGHT, singleStep=0.5, prefix="w = ")
        self.weight.valueChanged.connect(lambda v: session.update(weight=float(v)))
        self.gamma = LimitedDoubleSpinBox(limits.GAMMA, singleStep=0.5, prefix="γ = ")
        self.gamma.valueChanged.connect(lambda v: session.update(weight=round(float(v) - 1.0, 6)))
        self.window_on = QCheckBox("Only from")
        self.window_on.toggled.connect(lambda on: session.update(window_on=bool(on)))
        self.window_start = LimitedDoubleSpinBox(limits.WINDOW_START, singleStep=0.05)
        self.window_start.valueChanged.connect(self._on_window)
        self.window_end = LimitedDoubleSpinBox(limits.WINDOW_END, singleStep=0.05)
        self.window_end.valueChanged.connect(self._on_window)
        self.maps = QCheckBox("Maps")
        self.maps.toggled.connect(lambda on: session.update(maps=bool(on)))
        self.twin = QCheckBox("Unguided twin")
        self.twin.toggled.connect(lambda on: session.update(twin=bool(on)))
        self.note = NoteLabel()
        for box in (self.scale, self.weight, self.gamma, self.window_start, self.window_end):
            box.refused.connect(self.note.say)
        self._class_key: tuple[str, ...] | None = None

        weight_row = QHBoxLayout()
        weight_row.addWidget(self.weight, 1)
        weight_row.addWidget(self.gamma, 1)
        window_row = QHBoxLayout()
        window_row.addWidget(self.window_on)
        window_row.addWidget(self.window_start)
        window_row.addWidget(QLabel("to"))
        window_row.addWidget(self.window_end)
        form = QFormLayout(self)
        form.addRow("Type", self.kind)
        form.addRow("Target class", self.target)
        form.addRow("Classifier scale s", self.scale)
        form.addRow("CFG strength", weight_row)
        form.addRow("Window", window_row)
        views_row = QHBoxLayout()
        views_row.addWidget(self.maps)
        views_row.addWidget(self.twin)
        views_row.addStretch(1)
        form.addRow("Record", views_row)
        form.addRow(self.note)
        session.subscribe(lambda _: self.refresh())
        self.refresh()

    def _on_window(self, _value: float) -> None:
        start, end = self.window_start.value(), self.window_end.value()
        if start < end:
            self.session.update(window_start=float(start), window_end=float(end))
            self.window_on.setToolTip("Guidance applies only in this fraction of the run (0 = first step)")
        else:
            self.window_on.setToolTip("The window must start before it ends.")

    def refresh(self) -> None:
        s, caps = self.session.settings, self.session.caps
        reasons = self.session.availability()
        self.note.say("")
        for kind in GUIDANCE_LABELS:
            self.kind.set_item_reason(kind, reasons[f"guidance:{kind}"])
        names = tuple(caps.class_name(k) for k in range(caps.num_classes)) if caps else ()
        if names != self._class_key:
            self._class_key = names
            self.target.set_items([(name, k) for k, name in enumerate(names)])
        set_quietly(self.kind, s.guidance)
        set_quietly(self.target, s.class_index)
        set_quietly(self.scale, s.scale)
        set_quietly(self.weight, s.weight)
        set_quietly(self.window_on, s.window_on)
        set_quietly(self.window_start, s.window_start)
        set_quietly(self.window_end, s.window_end)
        set_quietly(self.gamma, round(1.0 + s.weight, 6))
        set_quietly(self.maps, s.maps)
        set_quietly(self.twin, s.twin)
        enable(self.maps, reasons["maps"], "Keep each step's CFG and classifier terms as heat maps (Guidance dock); "
               "costs a little memory, no sampling time")
        enable(self.twin, reasons["twin"], "Also sample the same noise without guidance (w = s = 0) to compare "
               "with: once guidance acts, one more network pass of the batch per step")
        blocked = [r for k in ("classifier", "cfg") if (r := reasons[f"guidance:{k}"])]
        self.kind.setToolTip("\n".join(blocked) or "How sampling is steered toward the target class")
        enable(self.target, reasons["class"], "The class every sample is steered toward (and coloured by)")
        enable(self.scale, reasons["scale"], with_range("Classifier guidance: μ ← μ + s·Σ·∇log p(y|x_t)", limits.SCALE))
        enable(self.weight, reasons["weight"], with_range(
            "ε̂ = (1+w)·ε(x, y) − w·ε(x, ∅); w = 0 is the plain conditional model", limits.WEIGHT))
        enable(self.gamma, reasons["weight"], with_range(
            "The same strength as diffusers' guidance_scale γ = s_cfg = 1 + w (γ = 1 is the plain conditional "
            "model); type either w or γ", limits.GAMMA))
        window_reason = reasons["window"]
        enable(self.window_on, window_reason, "Guidance applies only in this fraction of the run (0 = first step)")
        for box in (self.window_start, self.window_end):
            enable(box, window_reason or (None if s.window_on else "Tick “Only from” to limit guidance to a window."),
                   with_range("Fraction of the run (0 = first, noisiest step; 1 = the end)", box.limit))
