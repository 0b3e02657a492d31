"""Run a blocking call (importing torch, loading a model) in a thread; its outcome arrives as a signal.
(`Turns` spreads GUI-thread work over event-loop turns.)

Works under any Qt event loop (qasync's in the app, a plain one in tests). The result is delivered
on the GUI thread through a queued signal, so slots may touch widgets.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal


def describe_error(exc: BaseException, context: str = "") -> str:
    """A one-paragraph message a user can read, for any exception raised by the engine."""
    name = type(exc).__name__
    if "OutOfMemory" in name or isinstance(exc, MemoryError):
        text = ("Out of memory. Try a smaller batch, fewer steps, fp16/bf16 on a GPU, or the CPU. "
                f"({str(exc).splitlines()[0] if str(exc) else name})")
    elif isinstance(exc, (ValueError, FloatingPointError, FileNotFoundError)):
        text = str(exc) or name
    else:
        text = f"{name}: {exc}"
    return f"{context}{text}"


# Kept job threads by name: one-thread pools (as SerialTasks uses). Sampling runs on a kept thread rather
# than a new one per run: CUDA's libraries keep per-thread state (cuDNN's benchmarked convolution plans among
# it) that a new thread builds again. On an H100, a 30-step Stable-Diffusion-sized run took 3.0–4.2 s on a new
# thread each time, 1.4 s on a kept one.
_LANES: dict[str, ThreadPoolExecutor] = {}
_LANES_LOCK = threading.Lock()


def _lane(name: str) -> ThreadPoolExecutor:
    with _LANES_LOCK:
        if name not in _LANES:
            _LANES[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return _LANES[name]


def close_lanes() -> None:
    """Let every kept job thread end once its jobs are done (quitting); a later job starts a new one."""
    with _LANES_LOCK:
        for pool in _LANES.values():
            pool.shutdown(wait=False)
        _LANES.clear()


class Turns(QObject):
    """GUI-thread work split into event-loop turns of its own: each part runs in a pass of the event loop over its
    timers, after the repaint the part before posted, so no turn holds the window for the sum of them. `after`:
    other Turns (one, or several in a tuple) whose parts go first, and the repaint their last part posts.

    Every Turns takes its turns from one timer (`_TurnTaker`): one part of any of them runs in a pass. With a
    timer each, a live frame's redraws, the arrows of a field and the paths held at a change of plane ran in
    one pass, and their repaints then came in one batch of the next (one of the GUI thread's longest turns)."""

    def __init__(self, parent: QObject | None = None, after: Turns | tuple[Turns, ...] | None = None):
        super().__init__(parent)
        self.after = after
        self._parts: list[Callable[[], object]] = []
        self._tail = False  # the last part ran; the turn after it (after its repaint) has not come yet

    def __bool__(self) -> bool:
        """Whether parts are still to run."""
        return bool(self._parts)

    @property
    def busy(self) -> bool:
        """Whether parts are still to run, or the turn after the last has not come yet (it comes after the
        repaint the last part posted)."""
        return bool(self._parts) or self._tail

    def add(self, *parts: Callable[[], object]) -> None:
        self._parts.extend(parts)
        if parts:
            _TurnTaker.get().enqueue(self)

    def cancel(self) -> None:
        self._parts.clear()
        self._tail = False

    def finish_now(self) -> None:
        """Run what is left at once."""
        self._tail = False
        while self._parts:
            self._parts.pop(0)()

    def _ready(self) -> bool:
        after = self.after if isinstance(self.after, tuple) else (self.after,)
        return bool(self._parts) and not any(turns is not None and turns.busy for turns in after)

    def _take_turn(self) -> None:
        self._parts.pop(0)()
        self._tail = not self._parts


class _TurnTaker(QObject):
    """The one 0 ms timer every Turns takes its turns from: at each pass over the event loop's timers, it ends the
    turns after last parts (those Turns are no longer busy), then runs the next part of the first Turns in line
    whose `after` is not busy.

    A pass after one that ran a part runs none: that pass delivers the part's repaint (a scene repaints the window
    in its queued update, before the loop's timers), and a part run after it held the loop for both. With a
    timer due meanwhile (a 10 ms tick), a repaint of 6-9 ms and the next part of 8-9 ms made an 18-19 ms gap."""

    _instance: _TurnTaker | None = None

    @classmethod
    def get(cls) -> _TurnTaker:
        if cls._instance is None or not shiboken6.isValid(cls._instance):
            cls._instance = cls(QCoreApplication.instance())
        return cls._instance

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._line: list[Turns] = []  # Turns with parts or a tail turn to come, in the order they asked
        self._ran = False  # the last pass ran a part: this one is left to its repaint
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._pass)

    def enqueue(self, turns: Turns) -> None:
        if turns not in self._line:
            self._line.append(turns)
        if not self._timer.isActive():
            self._timer.start(0)

    def _pass(self) -> None:
        self._line = [turns for turns in self._line if shiboken6.isValid(turns)]  # (a Turns deleted with its parent)
        for turns in self._line:
            turns._tail = False
        rest, self._ran = self._ran, False
        ready = None if rest else next((turns for turns in self._line if turns._ready()), None)
        try:
            if ready is not None:
                self._ran = True
                ready._take_turn()  # (it may add parts, and Turns to the line)
        finally:
            self._line = [turns for turns in self._line if shiboken6.isValid(turns) and turns.busy]
            if self._line:
                self._timer.start(0)


def while_showing(showing: Callable[[], bool], parts: list[Callable[[], object]]) -> list[Callable[[], None]]:
    """`parts` for Turns, each doing nothing once `showing()` is false (what it would draw has left the screen)."""
    def only_while_showing(part: Callable[[], object]) -> None:
        if showing():
            part()

    return [functools.partial(only_while_showing, part) for part in parts]


class ThreadedJob(QObject):
    """A QObject whose `_run` executes once off the GUI thread; its signals reach the GUI thread.

    thread_name: the thread's name. lane: run on the kept thread of that name (`_lane`), after the jobs given
    to it before, instead of on a thread of its own. daemon: whether that thread may be left running when the
    app exits. Not for work in torch that can outlast closing (loading a model): a daemon thread still inside
    torch when the interpreter shuts down aborts the process; a non-daemon one is waited for.
    """

    def __init__(self, thread_name: str, parent: QObject | None = None, *, lane: bool = False, daemon: bool = True):
        super().__init__(parent)
        self._thread_name = thread_name
        self._lane = lane
        self._daemon = daemon
        self._started = False
        self._ended = threading.Event()
        self.ran_on: threading.Thread | None = None  # the thread that ran it

    def start(self):
        self._started = True
        if self._lane:
            _lane(self._thread_name).submit(self._run_to_end)
        else:
            threading.Thread(target=self._run_to_end, daemon=self._daemon, name=self._thread_name).start()
        return self

    def _run_to_end(self) -> None:
        self.ran_on = threading.current_thread()
        try:
            self._run()
        except Exception:  # said here, on either kind of thread; a kept thread goes on to its next job
            traceback.print_exc()
        finally:
            self._ended.set()

    @property
    def started(self) -> bool:
        return self._started

    def is_running(self) -> bool:
        return self._started and not self._ended.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for `_run` to end; True when it has ended (or never started)."""
        return not self._started or self._ended.wait(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class BackgroundTask(ThreadedJob):
    """`fn()` in a thread of its own (or on the kept thread `thread_name` with `lane`: after the jobs given to it
    before); `done(result)` or `failed(message)` afterwards, on the GUI thread."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any], context: str = "", parent: QObject | None = None, *,
                 thread_name: str = "background-task", lane: bool = False, daemon: bool = True):
        super().__init__(thread_name, parent, lane=lane, daemon=daemon)
        self._fn = fn
        self._context = context

    def _run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # every failure becomes a message; the app stays usable
            traceback.print_exc()
            _emit(self.failed, describe_error(exc, self._context))
            return
        _emit(self.done, result)


class SerialTasks(QObject):
    """Functions run one after another on one helper thread, in the order submitted; each outcome
    comes back on the GUI thread as `done(tag, result)` or `failed(tag, message)`.

    For slow work a slot must not do itself (encoding and writing PNGs): the GUI stays responsive.
    `background=True` runs them at the lowest scheduling priority (`lower_thread_priority`), so that a
    sampling run on the other threads gets the cores first. Only for work that spends its time outside the
    GIL (compression, encoding, writing): a descheduled low-priority thread that holds the GIL stalls the GUI
    thread until the scheduler runs it again (bench/ui_latency.py --profile: SerialTasks._deliver).
    """

    done = Signal(object, object)
    failed = Signal(object, str)
    _finished = Signal(object, object)  # (tag, Future), emitted on the helper thread, received queued

    def __init__(self, context: str = "", parent: QObject | None = None, background: bool = False):
        super().__init__(parent)
        self._context = context
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serial-task",
                                        initializer=lower_thread_priority if background else None)
        self._pending: list[tuple[Any, Future]] = []
        self._closed = False
        self._finished.connect(self._deliver)
        # The helper thread starts now: started by the first submit (mid-run), its start waited for the
        # GIL with the GUI thread blocked (120 ms under load, bench/ui_latency.py --profile).
        self._pool.submit(lambda: None)

    def submit(self, tag: Any, fn: Callable[[], Any], on: Callable[[Callable[[], Any]], Future | None] | None = None
               ) -> bool:
        """Queue `fn`; False (and nothing runs) once `close` has been called. `on`: another thread to run it on
        (given `fn`, its Future, or None when it cannot take it; then the helper thread runs it)."""
        if self._closed:
            return False
        future = on(fn) if on is not None else None
        if future is None:
            future = self._pool.submit(fn)
        self._pending.append((tag, future))
        future.add_done_callback(lambda f: _emit(self._finished, tag, f))
        return True

    def pending(self) -> int:
        """How many submitted functions have not reported yet."""
        return len(self._pending)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted function has run and report those that have, in order, now
        (GUI thread; for closing). False if some were still running after `timeout` seconds."""
        pending = list(self._pending)
        _, not_done = wait([f for _, f in pending], timeout)
        for tag, future in pending:
            if future.done():
                self._deliver(tag, future)
        return not not_done

    def close(self, timeout: float | None = None) -> bool:
        """At closing: `wait` for what was submitted, then end the helper thread (an idle pool thread
        would otherwise live until the interpreter exits). Nothing can be submitted afterwards."""
        finished = self.wait(timeout)
        self._closed = True
        self._pool.shutdown(wait=False)
        return finished

    def _deliver(self, tag: Any, future: Future) -> None:
        index = next((i for i, (_, f) in enumerate(self._pending) if f is future), None)
        if index is None:
            return  # already reported by wait()
        del self._pending[index]
        exc = future.exception()
        if exc is None:
            self.done.emit(tag, future.result())
        else:
            traceback.print_exception(exc)
            self.failed.emit(tag, describe_error(exc, self._context))


def lower_thread_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19) where threads have their own (Linux);
    elsewhere leave it as it is. The scheduler then runs it only on cores the other threads leave idle."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass


def _emit(signal: Any, *values: Any) -> None:
    """Emit from a worker thread, tolerating a receiver already deleted at shutdown."""
    try:
        signal.emit(*values)
    except RuntimeError:
        pass
