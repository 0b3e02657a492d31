"""The sampling worker: `core.sample` in a thread, newest-frame coalescing, cancel, errors as signals.

The engine thread records each step (`core.recording.Recorder`: previews and curves, the run's named
tracks) and stores it as the latest frame; it posts `frame_ready` only when the GUI has taken the
previous one, so the GUI never queues work and the engine never waits for painting. Stop sets a
`threading.Event` the step iterator checks between steps. The run ends with `finished(RunResult)`
(completed=False after Stop) or `failed(msg)`.
"""
from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, Signal

from core import ModelBundle, SamplingRequest, sample
from core.recording import Recorder

from ..tasks import ThreadedJob, _emit, describe_error
from .trajectory import Frame, Frames


class SamplingWorker(ThreadedJob):
    """One run of `request` on `bundle`. Start with `start()`; the GUI calls `take_frame()` on frame_ready."""

    frame_ready = Signal()
    finished = Signal(object)  # RunResult
    failed = Signal(str)

    def __init__(self, request: SamplingRequest, bundle: ModelBundle, parent: QObject | None = None):
        super().__init__("sampling", parent)
        self.request = request
        self.bundle = bundle
        self.recorder = Recorder.for_bundle(request, bundle)
        self.trajectory = Frames(self.recorder)  # what the GUI reads while the run is recorded
        self.frames_posted = 0
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._posted = False

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

    def _run(self) -> None:
        recorder = self.recorder
        try:
            for step in sample(self.request, self.bundle, self._cancel, diagnostics=True):
                self._publish(self.trajectory.frame(recorder.add(step)))
            completed = recorder.num_steps > 0 and len(recorder) == recorder.num_steps + 1
            result = recorder.result(completed)
        except Exception as exc:  # bad checkpoint, NaN, out of memory: a message, never a crash
            traceback.print_exc()
            _emit(self.failed, describe_error(exc, "Sampling failed: "))
            return
        _emit(self.finished, result)
