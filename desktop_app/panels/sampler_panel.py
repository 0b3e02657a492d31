"""Sampler panel: DDPM/DDIM, steps (respacing spec), η, seed with a dice button, batch, x̂0 clipping."""
from __future__ import annotations

import random

from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QToolButton, QWidget

from .. import limits
from ..session import Session
from .widgets import ItemCombo, LimitedDoubleSpinBox, LimitedSpinBox, NoteLabel, enable, set_quietly, with_range

STEP_PRESETS = ("25", "50", "100", "250", "1000", "ddim25", "ddim50", "ddim100")
CLIP_LABELS = (("Model default", "auto"), ("None", "none"), ("Clip to [−1, 1]", "clip"),
               ("Dynamic thresholding", "dynamic"))
STEPS_TIP = "Number of denoising steps, 'ddimN', or sections like '10,15,20'"
BATCH_TIP = "Samples per run (points for 2-D models, images otherwise)"


class SamplerPanel(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__("Sampler", parent)
        self.session = session
        self.sampler = ItemCombo([("DDIM", "ddim"), ("DDPM", "ddpm")])
        self.sampler.activated.connect(lambda _: session.update(sampler=self.sampler.currentData()))
        self.steps = ItemCombo([(p, p) for p in STEP_PRESETS])
        self.steps.setEditable(True)
        self.steps.setCompleter(None)  # what is typed is what counts: no completing "1" to "100"
        self.steps.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.steps.setToolTip(STEPS_TIP)
        self.steps.currentTextChanged.connect(self._on_steps)
        self.note = NoteLabel()
        self.eta = LimitedDoubleSpinBox(limits.ETA, singleStep=0.1)
        self.eta.valueChanged.connect(lambda v: session.update(eta=float(v)))
        self.seed = LimitedSpinBox(limits.SEED)
        self.seed.setToolTip(with_range("The seed of sample 0 (sample i uses seed + i)", limits.SEED))
        self.seed.valueChanged.connect(lambda v: session.update(seed=int(v)))
        self.dice = QToolButton(text="Random")
        self.dice.setToolTip("A random seed")
        self.dice.clicked.connect(self.roll_seed)
        self.batch = LimitedSpinBox(limits.batch_limit(True))
        self.batch.valueChanged.connect(lambda v: session.set_batch(int(v)))
        for box in (self.eta, self.seed, self.batch):
            box.refused.connect(self.note.say)
        self.clip = ItemCombo(list(CLIP_LABELS))
        self.clip.setToolTip("How the predicted clean sample x̂₀ is kept in range before each update")
        self.clip.activated.connect(lambda _: session.update(clip=self.clip.currentData()))

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        form = QFormLayout(self)
        form.addRow("Sampler", self.sampler)
        form.addRow("Steps", self.steps)
        form.addRow("η (eta)", self.eta)
        form.addRow("Seed", seed_row)
        form.addRow("Batch", self.batch)
        form.addRow("Clip pred. x₀", self.clip)
        form.addRow(self.note)
        session.subscribe(lambda _: self.refresh())
        self.refresh()

    def roll_seed(self) -> None:
        self.session.update(seed=random.randint(0, int(limits.SEED.high)))

    def _on_steps(self, text: str) -> None:
        from_text = text.strip()
        if from_text:
            self.session.update(steps=from_text)

    def refresh(self) -> None:
        s = self.session.settings
        caps = self.session.caps
        batch_limit = limits.batch_limit(caps is None or caps.is_points)
        if self.batch.limit != batch_limit:
            self.batch.blockSignals(True)  # the range follows the model; the session keeps both batches
            self.batch.limit = batch_limit
            self.batch.setRange(batch_limit.low, batch_limit.high)
            self.batch.blockSignals(False)
        self.batch.setToolTip(with_range(BATCH_TIP, batch_limit))
        self.note.say("")
        set_quietly(self.sampler, s.sampler)
        set_quietly(self.steps, s.steps)
        set_quietly(self.eta, s.eta)
        set_quietly(self.seed, s.seed)
        set_quietly(self.batch, self.session.batch)
        set_quietly(self.clip, s.clip)
        reasons = self.session.availability()
        enable(self.eta, reasons["eta"], with_range("0 = deterministic DDIM, 1 = as noisy as DDPM", limits.ETA))
        error = self.session.validation_error() if self.session.caps is not None else None
        bad_steps = error is not None and "steps" in error.lower()
        self.steps.setStyleSheet("QComboBox { background: #fdd; }" if bad_steps else "")
        self.steps.setToolTip(error if bad_steps else STEPS_TIP)
