"""Compiling the current model's network for this CPU in the background, once (core/compiled.py).

After a model has loaded on the CPU, `NetworkCompiler.consider` starts `python -m core compile --background`
for it in a separate, low-priority process when its network qualifies and has no compiled library yet: compiling
takes half a minute or more of Python and C++ compiler work, which in the app's own process would hold the
GUI thread's interpreter lock and in a thread of it could not be stopped. When the process has finished,
the library is attached to the bundle on the sampling thread (between runs), and the status line says
so. Until then, and wherever compiling is impossible (no C++ compiler, a packaged app), runs use the
network as it is. A model switch or quitting ends the process. GUIDANCE_STUDIO_COMPILE=0 turns this off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from .tasks import BackgroundTask

ENV_SWITCH = "GUIDANCE_STUDIO_COMPILE"


def packaged() -> bool:
    """A packaged app: no interpreter to run the command, rarely a compiler, and without what compiled
    networks need (sympy among it)."""
    return bool(getattr(sys, "frozen", False))


def enabled() -> bool:
    """Off in a packaged app and when the environment says 0."""
    return not packaged() and os.environ.get(ENV_SWITCH, "1") != "0"


def prepare(bundle: Any) -> bool:
    """Off the GUI thread, after a load: attach the network's compiled library if it is there; True when compiling
    it is worth starting (it qualifies and has none yet). Nothing in a packaged app."""
    if packaged():
        return False
    from core import compiled

    return not compiled.attach(bundle) and compiled.wanted(bundle)


class NetworkCompiler(QObject):
    """Signals: status(text) for the status line, attached(bundle name) once a run will use the compiled network."""

    status = Signal(str)
    attached = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self._bundle: Any = None
        self._attach: BackgroundTask | None = None
        self.command = [sys.executable, "-m", "core", "compile", "--background"]  # + --model KEY

    def consider(self, bundle: Any, key: str, wanted: bool) -> None:
        """The loader's new bundle: stop compiling another one's network, and start on this one's if `wanted`
        and the command can load it by `key` alone (a built-in model or a model file of ours)."""
        if self._bundle is not None and self._bundle is not bundle:
            self.stop()
        if not wanted or not enabled() or self.process is not None:
            return
        if not (key == bundle.name or Path(key).suffix == ".safetensors"):
            return
        self._bundle = bundle
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        root = str(Path(__file__).resolve().parent.parent)  # where `core` is, installed or not
        env.insert("PYTHONPATH", os.pathsep.join(p for p in (root, env.value("PYTHONPATH")) if p))
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.finished.connect(lambda code, _status: self._finished(process, code))
        process.errorOccurred.connect(lambda _error: self._finished(process, -1))
        self.process = process
        process.start(self.command[0], [*self.command[1:], "--model", key])
        self.status.emit(f"Compiling {bundle.name}'s network for this CPU in the background (once, about half a "
                         "minute); runs get faster when it is ready.")

    def _finished(self, process: QProcess, code: int) -> None:
        if process is not self.process:
            return
        self.process = None
        output = bytes(process.readAll().data()).decode(errors="replace").strip().splitlines()
        process.deleteLater()
        bundle, self._bundle = self._bundle, None
        if bundle is None:
            return
        if code != 0:
            why = output[-1].removeprefix("error: ") if output else "the compiler process did not start"
            self.status.emit(f"{bundle.name} runs as before: {why}")
            return
        from core import compiled

        task = BackgroundTask(lambda: compiled.attach(bundle), "Could not use the compiled network: ", self,
                              thread_name="sampling", lane=True)  # between runs: a run keeps its forward
        task.done.connect(lambda ok: self._attached(bundle, ok))
        task.failed.connect(self.status.emit)
        self._attach = task
        task.start()

    def _attached(self, bundle: Any, ok: bool) -> None:
        if ok:
            self.status.emit(f"{bundle.name}'s network is compiled for this CPU: runs from now on take the "
                             "compiled forward.")
            self.attached.emit(bundle.name)
        else:
            self.status.emit(f"{bundle.name} runs as before: its compiled network did not reproduce it.")

    def stop(self) -> None:
        """End a compile in progress (model switch, quitting); its bundle runs as it is."""
        process, self.process, self._bundle = self.process, None, None
        if process is not None:
            process.kill()
            process.waitForFinished(2000)
            process.deleteLater()
