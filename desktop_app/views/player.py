"""The step player shared by every view of a run: a scrubber, play/pause, speed, loop and step buttons.

`StepPlayer` only moves an index over steps 0 … count−1 and says so (`index_changed`); its owner shows
that step (the live panes, every cell of a sweep, both runs of a comparison). Clicking the scrubber's
track jumps to the step clicked; the buttons, or the keys of the window's Run menu, step by ±1 and ±10.
Playback advances by time, not by ticks, so a speed is kept however long painting takes: 1× plays
the whole run in PLAY_SECONDS, 0.25×–8× scale that, and "real time" replays each step at the moment
it was computed (from the run's `elapsed` track).
"""
from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

PLAY_SECONDS = 5.0  # 1×: a whole run, however many steps, in this many seconds
SPEEDS = (("0.25×", 0.25), ("0.5×", 0.5), ("1×", 1.0), ("2×", 2.0), ("4×", 4.0), ("8×", 8.0),
          ("real time", None))
TICK_MS = 30


class StepSlider(QSlider):
    """A horizontal slider whose track jumps to the step clicked (Qt's default pages by 10)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setSingleStep(1)
        self.setPageStep(10)

    def value_at(self, x: float) -> int:
        """The step under horizontal position `x` (pixels in this widget)."""
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        style = self.style()
        groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderGroove, self)
        handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, self)
        span = max(1, groove.width() - handle.width())
        position = round(x - groove.x() - handle.width() / 2)
        return QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), position, span)

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton and self.isEnabled():
            option = QStyleOptionSlider()
            self.initStyleOption(option)
            hit = self.style().hitTestComplexControl(QStyle.ComplexControl.CC_Slider, option,
                                                     event.position().toPoint(), self)
            if hit != QStyle.SubControl.SC_SliderHandle:
                self.setValue(self.value_at(event.position().x()))
                self.setSliderDown(True)  # keep dragging from here
        super().mousePressEvent(event)


def step_text(index: int, num_steps: int, timestep: int | None, noise_level: float) -> str:
    """What the label says about a step: its index, the network's t and the noise level √(1−ᾱ_t)."""
    parts = [f"step {index} / {num_steps}"]
    parts.append("t = –" if timestep is None else f"t = {timestep}")
    if math.isfinite(noise_level):
        parts.append(f"noise √(1−ᾱ) = {noise_level:.3f}")
    return " · ".join(parts)


class StepPlayer(QWidget):
    """Scrubber and playback controls. `index_changed(i)` whenever the step changes (user or playback)."""

    index_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Replay the run as an animation (Space)")
        self.buttons = {}
        for delta, text, tip in ((-10, "«", "10 steps back (Shift+Left)"), (-1, "‹", "One step back (Left)"),
                                 (1, "›", "One step forward (Right)"), (10, "»", "10 steps forward (Shift+Right)")):
            button = QToolButton(text=text)
            button.setToolTip(tip)
            button.setAutoRepeat(True)
            button.clicked.connect(lambda _checked=False, d=delta: self.step_by(d))
            self.buttons[delta] = button
        self.slider = StepSlider()
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Click or drag to any step of the run; arrow keys step by 1, Page Up/Down by 10")
        self.speed = QComboBox()
        for label, _ in SPEEDS:
            self.speed.addItem(label)
        self.speed.setCurrentIndex(2)
        self.speed.setToolTip(f"Replay speed: 1× plays the whole run in {PLAY_SECONDS:g} s; real time replays "
                              "each step when it was computed")
        self.loop = QCheckBox("Loop")
        self.loop.setToolTip("Start again from step 0 at the end")
        self.step_label = QLabel("no run yet")
        # Its text changes with every step: it must not change the window's layout (the panes' size).
        self.step_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row = QHBoxLayout()  # the scrubber gets a whole line
        row.addWidget(self.buttons[-10])
        row.addWidget(self.buttons[-1])
        row.addWidget(self.slider, 1)
        row.addWidget(self.buttons[1])
        row.addWidget(self.buttons[10])
        below = QHBoxLayout()
        below.addWidget(self.play_button)
        below.addWidget(self.speed)
        below.addWidget(self.loop)
        below.addSpacing(12)
        below.addWidget(self.step_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addLayout(below)
        self._scrubber_row = row
        self._elapsed: np.ndarray | None = None
        self._position = 0.0  # fractional step (speeds) or seconds into the run (real time)
        self._last_tick = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self.play_button.toggled.connect(self._on_play)
        self.slider.valueChanged.connect(self.index_changed)
        self.set_enabled(False)

    # --- state -------------------------------------------------------------------------------------

    def index(self) -> int:
        return self.slider.value()

    def count(self) -> int:
        return self.slider.maximum() + 1

    def set_count(self, count: int, follow: bool = False) -> None:
        """Steps 0 … count−1 can be shown; with `follow` the scrubber moves to the last (no signal)."""
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(0, count - 1))
        if follow:
            self.slider.setValue(self.slider.maximum())
        self.slider.blockSignals(False)

    def set_index(self, index: int, notify: bool = True) -> None:
        """Move to step `index` (clamped); `index_changed` follows when it moved and `notify`."""
        self.slider.blockSignals(not notify)
        self.slider.setValue(index)
        self.slider.blockSignals(False)

    def step_by(self, delta: int) -> None:
        """Pause playback and move `delta` steps (the ±1 / ±10 buttons and keys)."""
        if self.slider.isEnabled():
            self.play_button.setChecked(False)
            self.set_index(self.index() + delta)

    def set_elapsed(self, elapsed: np.ndarray | None) -> None:
        """Seconds from the run's start to each step, for real-time replay (None: unknown)."""
        self._elapsed = None if elapsed is None else np.asarray(elapsed, dtype=np.float64)

    def add_beside_scrubber(self, widget: QWidget) -> None:
        """Put `widget` at the end of the scrubber's line, which the slider shrinks for, not of the line below,
        where the step's label would lose the room for its noise level."""
        self._scrubber_row.addWidget(widget)

    def set_enabled(self, enabled: bool) -> None:
        if not enabled:
            self.play_button.setChecked(False)
        for widget in (self.slider, self.play_button, *self.buttons.values()):
            widget.setEnabled(enabled)

    def speed_factor(self) -> float | None:
        """The chosen multiple of 1×, or None for real time."""
        return SPEEDS[self.speed.currentIndex()][1]

    def set_speed(self, label: str) -> None:
        self.speed.setCurrentIndex([text for text, _ in SPEEDS].index(label))

    @property
    def playing(self) -> bool:
        return self.play_button.isChecked()

    # --- playback ----------------------------------------------------------------------------------

    def _on_play(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if not playing:
            self._timer.stop()
            return
        if self.index() >= self.slider.maximum():
            self.set_index(0)
        self._position = self._start_position(self.index())
        self._last_tick = time.perf_counter()
        self._timer.start()

    def _real_time(self) -> bool:
        elapsed = self._elapsed
        return (self.speed_factor() is None and elapsed is not None and len(elapsed) >= self.count()
                and bool(np.isfinite(elapsed[: self.count()]).all()))

    def _start_position(self, index: int) -> float:
        return float(self._elapsed[index]) if self._real_time() else float(index)

    def advance(self, seconds: float) -> None:
        """Play on by `seconds` of wall time (the timer calls this; tests call it directly)."""
        top = self.slider.maximum()
        if self._real_time():
            self._position += seconds
            times = self._elapsed[: top + 1]
            index = int(np.searchsorted(times, self._position, side="right")) - 1
            end = self._position >= times[top]
        else:
            rate = max(top, 1) / PLAY_SECONDS * (self.speed_factor() or 1.0)  # steps per second
            self._position += seconds * rate
            index = int(self._position)
            end = self._position >= top
        if end and self.loop.isChecked():
            self._position = self._start_position(0)
            self.set_index(0)
            return
        self.set_index(min(max(index, 0), top))
        if end:
            self.play_button.setChecked(False)

    def _tick(self) -> None:
        now = time.perf_counter()
        seconds, self._last_tick = now - self._last_tick, now
        self.advance(seconds)
