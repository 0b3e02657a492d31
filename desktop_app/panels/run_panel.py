"""Start / Stop, step-through (pause, one step, run to step k), watch mode and a progress bar with the step
count and ETA."""
from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget

from ..session import Session
from .widgets import set_quietly

WATCH_TIP = ("Watch: pace the run at no more than this many steps a second, so that a fast model (a toy run "
             "takes well under a second) can be followed by eye. The recorded timing leaves the waits out.")


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds < 0:  # NaN
        return "…"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


class RunPanel(QWidget):
    def __init__(self, session: Session | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop after the current step")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Hold the run between two steps (the sampler waits; the window stays live)")
        self.step_button = QPushButton("Step")
        self.step_button.setToolTip("Take one more step, then hold again")
        self.run_to_box = QSpinBox(minimum=1, maximum=1, prefix="to step ")
        self.run_to_box.setToolTip("Run until this step, then hold")
        self.run_to_button = QPushButton("Run")
        self.run_to_button.setToolTip("Run until the chosen step, then hold")
        self.watch_box = QCheckBox("Watch: at most")
        self.watch_box.setToolTip(WATCH_TIP)
        self.watch_rate = QSpinBox(minimum=1, maximum=1000, suffix=" steps/s")
        self.watch_rate.setToolTip(WATCH_TIP)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        stepping = QHBoxLayout()
        stepping.addWidget(self.pause_button)
        stepping.addWidget(self.step_button)
        stepping.addWidget(self.run_to_box, 1)
        stepping.addWidget(self.run_to_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addLayout(stepping)
        watching = QHBoxLayout()
        watching.addWidget(self.watch_box)
        watching.addWidget(self.watch_rate, 1)
        layout.addLayout(watching)
        layout.addWidget(self.progress)
        self.set_running(False)
        if session is not None:
            self.watch_box.toggled.connect(lambda on: session.update(watch=on))
            self.watch_rate.valueChanged.connect(lambda v: session.update(watch_rate=int(v)))
            session.subscribe(self._refresh_watch)
            self._refresh_watch(session)

    def _refresh_watch(self, session: Session) -> None:
        s = session.settings
        set_quietly(self.watch_box, s.watch)
        set_quietly(self.watch_rate, min(max(s.watch_rate, 1), 1000))
        self.watch_rate.setEnabled(s.watch)

    def set_running(self, running: bool, start_reason: str | None = None) -> None:
        self.start_button.setEnabled(not running and start_reason is None)
        self.start_button.setToolTip(start_reason or ("A run is in progress." if running else "Sample with these settings"))
        self.stop_button.setEnabled(running)
        for widget in (self.pause_button, self.step_button, self.run_to_box, self.run_to_button):
            widget.setEnabled(running)
        if not running:
            self.show_held(None)

    def set_steps(self, num_steps: int) -> None:
        """The run's length: the range of "run to step"."""
        self.run_to_box.setMaximum(max(1, num_steps))

    def show_held(self, index: int | None) -> None:
        """The run waits after step `index` (None: it runs)."""
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(index is not None)
        self.pause_button.setText("Resume" if index is not None else "Pause")
        self.pause_button.blockSignals(False)
        if index is not None:
            self.progress.setFormat(f"held at step {index} / {self.progress.maximum()}")
            if self.run_to_box.value() <= index:  # offer a step ahead
                self.run_to_box.setValue(min(index + 10, self.run_to_box.maximum()))

    def show_progress(self, step: int, total: int, elapsed: float) -> None:
        # QProgressBar.setValue repaints at once (~8 ms a call, measured): paint with the next frame instead.
        self.progress.setUpdatesEnabled(False)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)
        eta = elapsed / step * (total - step) if step > 0 else float("nan")
        self.progress.setFormat(f"step {step} / {total} — ETA {format_eta(eta)}")
        self.progress.setUpdatesEnabled(True)
        self.progress.update()

    def show_done(self, text: str) -> None:
        self.progress.setFormat(text)

    def show_idle(self) -> None:
        """No run on screen: an empty bar saying so."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
