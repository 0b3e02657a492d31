"""Sampler panel: DDPM/DDIM, steps (respacing spec), η, seed with a dice button, batch, x̂0 clipping."""
from __future__ import annotations

import random

from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QSpinBox, QToolButton, QWidget

from ..session import Session
from .widgets import ItemCombo, enable, set_quietly

STEP_PRESETS = ("25", "50", "100", "250", "1000", "ddim25", "ddim50", "ddim100")
CLIP_LABELS = (("Model default", "auto"), ("None", "none"), ("Clip to [−1, 1]", "clip"),
               ("Dynamic thresholding", "dynamic"))
SEED_MAX = 2**31 - 1


class SamplerPanel(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__("Sampler", parent)
        self.session = session
        self.sampler = ItemCombo([("DDIM", "ddim"), ("DDPM", "ddpm")])
        self.sampler.activated.connect(lambda _: session.update(sampler=self.sampler.currentData()))
        self.steps = ItemCombo([(p, p) for p in STEP_PRESETS])
        self.steps.setEditable(True)
        self.steps.setToolTip("Number of denoising steps, 'ddimN', or sections like '10,15,20'")
        self.steps.currentTextChanged.connect(self._on_steps)
        self.eta = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.1)
        self.eta.valueChanged.connect(lambda v: session.update(eta=float(v)))
        self.seed = QSpinBox(minimum=0, maximum=SEED_MAX)
        self.seed.valueChanged.connect(lambda v: session.update(seed=int(v)))
        self.dice = QToolButton(text="Random")
        self.dice.setToolTip("A random seed")
        self.dice.clicked.connect(self.roll_seed)
        self.batch = QSpinBox(minimum=1, maximum=100_000)
        self.batch.setToolTip("Samples per run (points for 2-D models, images otherwise)")
        self.batch.valueChanged.connect(lambda v: session.set_batch(int(v)))
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
        session.subscribe(lambda _: self.refresh())
        self.refresh()

    def roll_seed(self) -> None:
        self.session.update(seed=random.randint(0, SEED_MAX))

    def _on_steps(self, text: str) -> None:
        from_text = text.strip()
        if from_text:
            self.session.update(steps=from_text)

    def refresh(self) -> None:
        s = self.session.settings
        set_quietly(self.sampler, s.sampler)
        set_quietly(self.steps, s.steps)
        set_quietly(self.eta, s.eta)
        set_quietly(self.seed, s.seed)
        set_quietly(self.batch, self.session.batch)
        set_quietly(self.clip, s.clip)
        reasons = self.session.availability()
        enable(self.eta, reasons["eta"], "0 = deterministic DDIM, 1 = as noisy as DDPM")
        error = self.session.validation_error() if self.session.caps is not None else None
        bad_steps = error is not None and "steps" in error.lower()
        self.steps.setStyleSheet("QComboBox { background: #fdd; }" if bad_steps else "")
        if bad_steps:
            self.steps.setToolTip(error)
