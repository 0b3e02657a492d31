"""Start / Stop and a progress bar with the step count and ETA."""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds < 0:  # NaN
        return "…"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


class RunPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop after the current step")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)

    def set_running(self, running: bool, start_reason: str | None = None) -> None:
        self.start_button.setEnabled(not running and start_reason is None)
        self.start_button.setToolTip(start_reason or ("A run is in progress." if running else "Sample with these settings"))
        self.stop_button.setEnabled(running)

    def show_progress(self, step: int, total: int, elapsed: float) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)
        eta = elapsed / step * (total - step) if step > 0 else float("nan")
        self.progress.setFormat(f"step {step} / {total} — ETA {format_eta(eta)}")

    def show_done(self, text: str) -> None:
        self.progress.setFormat(text)
