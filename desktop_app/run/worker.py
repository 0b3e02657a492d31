"""The sampling worker: `core.sample` in a thread, newest-frame coalescing, cancel, errors as signals.

The engine thread records each step (`core.recording.Recorder`: previews and curves, the run's named
tracks) and stores it as the latest frame; it posts `frame_ready` only when the GUI has taken the
previous one, so the GUI never queues work and the engine never waits for painting. Stop sets a
`threading.Event` the step iterator checks between steps. The run ends with `finished(RunResult)`
(completed=False after Stop) or `failed(msg)`.

On CUDA a step's frame is published once the next step is queued on the GPU (`Recorder` lags one step
there), so the GPU never waits for the host between steps; holds and pace count the recorded steps.

The classifier's p(y | x_t), where it costs a pass of its own, is computed only for steps whose frame
the GUI is expected to paint (`frame_will_show`, from its paint rhythm) and within 3 % of the run's
time (`core.diagnostics.DiagnosticsBudget`), or at every step with `exact_curves`. Likewise a latent
model's x̂0 is decoded by its VAE only for such frames, within 4 % of the sampling time, or at every step
with `exact_decode`; its final images always are (`core.latent_preview`).

Step-through: the engine stops between steps anyway, so the worker thread can simply wait there, on a
condition the GUI sets (`pause`, `step`, `run_to(k)`, `resume`), without the GUI ever waiting for it.
`held(index)` says the run is waiting after step `index`; time spent waiting is not the run's own.

Watch mode (`pace`, steps per second) slows a fast model down so a person can follow it: after each
step the worker waits until 1/pace s have passed since the previous one (Stop ends the wait at once);
that wait is not the run's own time either.

Work the GUI wants done beside a live run (the arrow field for the step on screen) is handed to the
worker (`submit`) and done on its thread between two steps, not on a third thread: on a 2-core machine a
third thread busy beside the sampler took the core the GUI thread paints on.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QObject, Signal

from core import ModelBundle, SamplingRequest, sample
from core.diagnostics import DiagnosticsBudget
from core.guidance_views import guidance_tracks
from core.latent_preview import ExactPreviews
from core.recording import Recorder
from core.runs import X0_DECODED

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
    held = Signal(int)  # waiting after this step index (pause, single step, run to step k)
    finished = Signal(object)  # RunResult
    failed = Signal(str)

    def __init__(self, request: SamplingRequest, bundle: ModelBundle, parent: QObject | None = None, *,
                 exact_curves: bool = False, paint_interval: float = 0.0, maps: bool = False, twin: bool = False,
                 exact_decode: bool = False, pace: float | None = None):
        """exact_curves: the classifier's p(y | x_t) at every step instead of within a 3 % budget.
        paint_interval: the least time (s) the GUI leaves between two paints (its frame throttle).
        maps / twin: also record the guidance maps / sample the unguided twin (`core.guidance_views`).
        exact_decode: a latent model's x̂0 decoded by its VAE at every step, instead of for the frames
        the GUI will paint within 4 % of the sampling time (`core.latent_preview`).
        pace: watch mode, at most this many steps per second (None or 0: as fast as the model goes)."""
        super().__init__("sampling", parent, lane=True)
        self.request = request
        self.bundle = bundle
        self.exact_curves = exact_curves
        self.paint_interval = paint_interval
        self.pace = pace if pace and pace > 0 else None
        self.twin = twin and request.guidance.kind != "none"
        extras = guidance_tracks(bundle, maps=maps, twin=self.twin)
        self.exact_previews = None
        if bundle.is_latent:
            self.exact_previews = ExactPreviews(bundle, exact=exact_decode, shown=self._this_frame_shows)
            extras[X0_DECODED] = self.exact_previews.track
        self.recorder = Recorder.for_bundle(request, bundle, extras=extras)
        self.trajectory = Frames(self.recorder)  # what the GUI reads while the run is recorded
        self.frames_posted = 0
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._posted = False
        self._taken_at = -float("inf")
        self._step_seconds = 0.0
        self._last = self._paced_from = 0.0  # when the latest frame was published / its pace began
        self._gate = threading.Condition()
        self._hold_at: int | None = None  # wait once a step index ≥ this is recorded; None: run freely
        self.held_at: int | None = None  # the step index the worker is waiting after, or None
        self._jobs: list[tuple[Callable[[], Any], Future]] | None = []  # `submit`ted; None once the run has ended

    def stop(self) -> None:
        """Ask the run to end after the step in progress (a held run ends at once)."""
        self._cancel.set()
        with self._gate:
            self._gate.notify_all()

    # --- step-through (GUI thread) -----------------------------------------------------------------

    def pause(self) -> None:
        """Hold after the step in progress."""
        self._hold(0)

    def resume(self) -> None:
        """Run freely to the end."""
        self._hold(None)

    def step(self) -> None:
        """One more step, then hold again."""
        with self._gate:
            done = len(self.recorder) - 1
            self._hold_at = (self.held_at if self.held_at is not None else done) + 1
            self._gate.notify_all()

    def run_to(self, index: int) -> None:
        """Run until step `index` is recorded, then hold (at once if it already is)."""
        self._hold(index)

    def _hold(self, index: int | None) -> None:
        with self._gate:
            self._hold_at = index
            self._gate.notify_all()

    def _holding(self, index: int) -> bool:
        return self._hold_at is not None and index >= self._hold_at and not self._cancel.is_set()

    def _wait_if_held(self, index: int) -> bool:
        """Worker thread, between steps: wait while step `index` is at or past the hold point, doing what is
        `submit`ted meanwhile; whether it waited."""
        with self._gate:
            if not self._holding(index):
                return False
            start = time.perf_counter()
            self.held_at = index
            _emit(self.held, index)
        while True:
            self._do_jobs()
            with self._gate:
                if not self._holding(index):
                    self.held_at = None
                    break
                if not self._jobs:
                    self._gate.wait()
        self.recorder.exclude(time.perf_counter() - start)
        return True

    # --- work beside the run ---------------------------------------------------------------------------

    def submit(self, fn: Callable[[], Any]) -> Future | None:
        """Run `fn` on the sampling thread after the step in progress (at once while held); its Future, or
        None when the run has ended (the caller then runs it elsewhere). Its time is not the run's own."""
        future: Future = Future()
        with self._gate:
            if self._jobs is None:
                return None
            self._jobs.append((fn, future))
            self._gate.notify_all()
        return future

    def _do_jobs(self, last: bool = False) -> float:
        """Worker thread: do what was submitted so far (and take no more if `last`); the seconds it took."""
        with self._gate:
            jobs, self._jobs = self._jobs or [], None if last else []
        start = time.perf_counter()
        for fn, future in jobs:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 — reported to whoever submitted it
                    future.set_exception(exc)
        return time.perf_counter() - start

    def _keep_pace(self, since: float) -> None:
        """Watch mode, worker thread: wait until 1/pace s have passed since `since`."""
        delay = since + 1.0 / self.pace - time.perf_counter()
        if delay > 0:
            start = time.perf_counter()
            self._cancel.wait(delay)
            self.recorder.exclude(time.perf_counter() - start)

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

    def _this_frame_shows(self) -> bool:
        """Whether the GUI is expected to paint the frame of the step just computed (not yet published)."""
        with self._lock:
            pending, ready_at = self._posted, self._taken_at + self.paint_interval
        start = time.perf_counter() - self._step_seconds
        return frame_will_show(start, self._step_seconds, ready_at, pending, self.paint_interval)

    def _run(self) -> None:
        try:
            outcome = self.finished, self._sample()
        except Exception as exc:  # noqa: BLE001 — bad checkpoint, NaN, out of memory: a message, never a crash
            traceback.print_exc()
            outcome = self.failed, describe_error(exc, "Sampling failed: ")
        finally:
            self._do_jobs(last=True)  # what was asked beside the run is answered before its end is told
        _emit(*outcome)

    def _recorded(self, index: int) -> None:
        """Worker thread, once step `index` is recorded: publish its frame, do the work asked beside the run,
        keep watch mode's pace, hold where asked."""
        frame = self.trajectory.frame(index)
        now = time.perf_counter()
        self._step_seconds, self._last = now - self._last, now  # the rhythm at which frames come
        self._publish(frame)
        if self._jobs:
            aside = self._do_jobs()
            self.recorder.exclude(aside)
            self._last += aside  # nor the next step's
        last_step = index == self.recorder.num_steps
        if not last_step and self.pace is not None:
            self._keep_pace(self._paced_from)
        self._paced_from = time.perf_counter()
        if not last_step and self._wait_if_held(index):
            self._last = time.perf_counter()  # the hold is not a step's time

    def _sample(self) -> Any:
        """The run, step by step; its RunResult."""
        recorder = self.recorder
        budget = None if self.exact_curves else DiagnosticsBudget(shown=self._next_frame_shows)
        diagnostics = True if budget is None else budget
        self._last = self._paced_from = time.perf_counter()
        for step in sample(self.request, self.bundle, self._cancel, diagnostics=diagnostics, twin=self.twin):
            if budget is not None:
                budget.observe(step)
            index = recorder.add(step)  # on CUDA the step before: this one is still on the GPU
            if index is not None:
                self._recorded(index)
        index = recorder.flush()
        if index is not None:
            self._recorded(index)
        completed = recorder.num_steps > 0 and len(recorder) == recorder.num_steps + 1
        result = recorder.result(completed)
        if self.exact_previews is not None:  # a latent run's result is its images, fully decoded
            result = dataclasses.replace(result, samples=self.exact_previews.final_images())
        return result
