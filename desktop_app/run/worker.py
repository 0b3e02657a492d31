"""The sampling worker: `core.sample` in a thread, newest-frame coalescing, cancel, errors as signals.

The engine thread records each step (`core.recording.Recorder`: previews and curves, the run's named
tracks) and stores it as the latest frame; it posts `frame_ready` only when the GUI has taken the
previous one, so the GUI never queues work and the engine never waits for painting. Stop sets a
`threading.Event` the step iterator checks between steps. The run ends with `finished(RunResult)`
(completed=False after Stop) or `failed(msg)`.

The classifier's p(y | x_t), where it costs a pass of its own, is computed only for steps whose frame
the GUI is expected to paint (`frame_will_show`, from its paint rhythm) and within 3 % of the run's
time (`core.diagnostics.DiagnosticsBudget`), or at every step with `exact_curves`.
"""
from __future__ import annotations

import threading
import time
import traceback

from PySide6.QtCore import QObject, Signal

from core import ModelBundle, SamplingRequest, sample
from core.diagnostics import DiagnosticsBudget
from core.recording import Recorder

from ..tasks import ThreadedJob, _emit, describe_error
from .trajectory import Frame, Frames


def frame_will_show(now: float, step_seconds: float, ready_at: float, pending: bool, interval: float) -> bool:
    """Whether the frame of a step starting `now` and lasting `step_seconds` is one the GUI will paint.

    The GUI's rhythm: it takes the newest frame as soon as one is posted and it is ready (`ready_at`,
    one paint `interval` after its last take); a frame is posted when none is `pending`. The frame is
    painted if a take falls between its end and the next step's end.
    """
    end = now + step_seconds
    if pending and ready_at < end:  # an older frame is taken first; the GUI is then ready again later
        ready_at += interval
        pending = False
    take = ready_at if pending else max(ready_at, end)
    return end <= take < end + step_seconds


class SamplingWorker(ThreadedJob):
    """One run of `request` on `bundle`. Start with `start()`; the GUI calls `take_frame()` on frame_ready."""

    frame_ready = Signal()
    finished = Signal(object)  # RunResult
    failed = Signal(str)

    def __init__(self, request: SamplingRequest, bundle: ModelBundle, parent: QObject | None = None, *,
                 exact_curves: bool = False, paint_interval: float = 0.0):
        """exact_curves: the classifier's p(y | x_t) at every step instead of within a 3 % budget.
        paint_interval: the least time (s) the GUI leaves between two paints (its frame throttle)."""
        super().__init__("sampling", parent)
        self.request = request
        self.bundle = bundle
        self.exact_curves = exact_curves
        self.paint_interval = paint_interval
        self.recorder = Recorder.for_bundle(request, bundle)
        self.trajectory = Frames(self.recorder)  # what the GUI reads while the run is recorded
        self.frames_posted = 0
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._posted = False
        self._taken_at = -float("inf")
        self._step_seconds = 0.0

    def stop(self) -> None:
        """Ask the run to end after the step in progress."""
        self._cancel.set()

    @property
    def stopping(self) -> bool:
        return self._cancel.is_set()

    def take_frame(self) -> Frame | None:
        """The newest frame not yet taken (GUI thread), re-arming `frame_ready`."""
        with self._lock:
            frame, self._latest, self._posted = self._latest, None, False
            self._taken_at = time.perf_counter()
        return frame

    def _publish(self, frame: Frame) -> None:
        with self._lock:
            self._latest = frame
            post = not self._posted
            self._posted = True
        if post:
            self.frames_posted += 1
            try:
                self.frame_ready.emit()
            except RuntimeError:  # the window is gone; the cancel flag ends the loop
                self._cancel.set()

    def _next_frame_shows(self) -> bool:
        """Whether the GUI is expected to paint the frame of the step about to run."""
        with self._lock:
            pending, ready_at = self._posted, self._taken_at + self.paint_interval
        return frame_will_show(time.perf_counter(), self._step_seconds, ready_at, pending, self.paint_interval)

    def _run(self) -> None:
        recorder = self.recorder
        budget = None if self.exact_curves else DiagnosticsBudget(shown=self._next_frame_shows)
        diagnostics = True if budget is None else budget
        last = time.perf_counter()
        try:
            for step in sample(self.request, self.bundle, self._cancel, diagnostics=diagnostics):
                if budget is not None:
                    budget.observe(step)
                frame = self.trajectory.frame(recorder.add(step))
                now = time.perf_counter()
                self._step_seconds, last = now - last, now  # the rhythm at which frames come
                self._publish(frame)
            completed = recorder.num_steps > 0 and len(recorder) == recorder.num_steps + 1
            result = recorder.result(completed)
        except Exception as exc:  # bad checkpoint, NaN, out of memory: a message, never a crash
            traceback.print_exc()
            _emit(self.failed, describe_error(exc, "Sampling failed: "))
            return
        _emit(self.finished, result)
