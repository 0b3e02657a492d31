"""Run a blocking call (importing torch, loading a model) in a thread; its outcome arrives as a signal.

Works under any Qt event loop (qasync's in the app, a plain one in tests). The result is delivered
on the GUI thread through a queued signal, so slots may touch widgets.
"""
from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal


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


class BackgroundTask(QObject):
    """`fn()` in a daemon thread; `done(result)` or `failed(message)` afterwards, on the GUI thread."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any], context: str = "", parent: QObject | None = None):
        super().__init__(parent)
        self._fn = fn
        self._context = context
        self._thread = threading.Thread(target=self._run, daemon=True, name="background-task")

    def start(self) -> "BackgroundTask":
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # every failure becomes a message; the app stays usable
            traceback.print_exc()
            _emit(self.failed, describe_error(exc, self._context))
            return
        _emit(self.done, result)


def _emit(signal: Any, value: Any) -> None:
    """Emit from a worker thread, tolerating a receiver already deleted at shutdown."""
    try:
        signal.emit(value)
    except RuntimeError:
        pass
