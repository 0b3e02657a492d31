"""Loading the engine and models in the background, and keeping the loaded bundle.

`ModelLoader` owns the current `core.ModelBundle`. Every load runs in a thread (`tasks.BackgroundTask`)
and reports on the GUI thread; a failed load shows a message and keeps the previous model.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from .compiling import NetworkCompiler, prepare
from .session import ModelCaps, Session
from .tasks import BackgroundTask


def _import_engine() -> tuple[list[Any], list[str]]:
    """Import torch and the engine (slow, first time) and read the model list and devices.

    CPU sampling gets all cores but one: the GUI thread keeps a core to paint on, so the window
    stays responsive while the sampler runs (on 2 cores, torch's 2 threads otherwise starve it).
    """
    import torch

    from core import list_models
    from core.device import available_devices

    from .run import worker  # noqa: F401  imported here, off the GUI thread: the first Start held the GIL for it

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return list_models(), available_devices()


def _load_file(path: str, classifier_path: str | None, flags: str, device: str, precision: str
               ) -> tuple[Any, Any, bool]:
    """(bundle, plan, whether compiling its network is worth starting): any model file or folder the
    Open-model dialog takes, through the same plan it shows (core.model_plan); a plan with an error raises
    it as one readable sentence. The network's compiled forward is attached when it is on disk."""
    from core.model_plan import open_planned, plan_open

    plan = plan_open(path, classifier_path or None, flags)
    bundle = open_planned(plan, device=device, precision=precision)
    return bundle, plan, _ready(bundle)


def _load_builtin(key: str, device: str, precision: str) -> tuple[Any, bool]:
    """(bundle, whether compiling its network is worth starting): a built-in model, or a file by path."""
    from core import load_model

    bundle = load_model(key, device=device, precision=precision)
    return bundle, _ready(bundle)


def _ready(bundle: Any) -> bool:
    """Off the GUI thread, after a load: what the first run would otherwise wait for; True when compiling the
    network is worth starting (`compiling.prepare`). A latent model's live-preview map (latent → RGB) is fitted
    from its VAE here rather than at the first step of its first run: 2.4–4.4 s for a VAE of Stable Diffusion's
    size on a 2-core CPU."""
    if bundle.is_latent:
        bundle.latent_rgb()
    return prepare(bundle)


class ModelLoader(QObject):
    """Signals: busy_changed(), loaded(name), failed(message), status(text),
    models_listed(rows of (key, label, tooltip)), backdrop_ready(points, colours)."""

    busy_changed = Signal()
    loaded = Signal(str)
    failed = Signal(str)
    status = Signal(str)
    models_listed = Signal(object)
    backdrop_ready = Signal(object, object)

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.bundle: Any = None
        self.key: str = ""
        self.engine_ready = False
        self._builtin_rows: list[tuple[str, str, str]] = []
        self._file_rows: list[tuple[str, str, str]] = []
        self._file_sources: dict[str, tuple[str, str | None, str]] = {}
        self._task: BackgroundTask | None = None
        self._backdrop_task: BackgroundTask | None = None
        self._backdrop_cancelled = threading.Event()
        self.compiler = NetworkCompiler(self)
        self.compiler.status.connect(self.status)

    @property
    def busy(self) -> bool:
        return self._task is not None

    def _run(self, fn: Any, on_done: Any, status: str, context: str) -> bool:
        if self._task is not None:
            return False
        self.status.emit(status)
        task = BackgroundTask(fn, context, self, daemon=False)  # a load still going at exit is finished first
        task.done.connect(lambda result: self._finish(task, on_done, result))
        task.failed.connect(lambda message: self._finish(task, self._on_failed, message))
        self._task = task
        task.start()
        self.busy_changed.emit()
        return True

    def _finish(self, task: BackgroundTask, then: Any, value: Any) -> None:
        if task is self._task:
            self._task = None
        then(value)
        self.busy_changed.emit()

    def _on_failed(self, message: str) -> None:
        self.status.emit("Ready." if self.bundle is not None else "No model loaded.")
        self.failed.emit(message)

    # --- the engine ------------------------------------------------------------------------------

    def start_engine(self, last_key: str = "", last_source: tuple[str, str | None, str] | None = None) -> None:
        """Import the engine in the background, then load `last_key` (or the default model).

        last_source: (path, classifier path, flags) when the last model came from a file or folder, so
        that it opens again exactly as it was opened (a guided-diffusion file with its flags).
        """
        def ready(found: tuple[list[Any], list[str]]) -> None:
            infos, devices = found
            self.engine_ready = True
            self.session.set_devices(devices)
            self._builtin_rows = [(i.name, i.name, i.description) for i in infos]
            self._emit_rows()
            names = {i.name for i in infos}
            from core import DEFAULT_MODEL

            if last_source is not None and last_source[0] == last_key and Path(last_key).exists():
                self.load_file(*last_source, apply_sampling=False)
            elif last_key not in names and Path(last_key).suffix == ".safetensors" and Path(last_key).is_file():
                self.load_file(last_key, apply_sampling=False)
            else:
                self.load(last_key if last_key in names else DEFAULT_MODEL)

        self._run(_import_engine, ready, "Loading PyTorch and the engine…", "Could not start the engine: ")

    def _emit_rows(self) -> None:
        self.models_listed.emit(self._builtin_rows + self._file_rows)

    # --- models ----------------------------------------------------------------------------------

    def load(self, key: str) -> None:
        """A built-in model by name, or a file opened before (its path, with its classifier and flags)."""
        if key in self._file_sources:
            self.load_file(*self._file_sources[key], apply_sampling=False)
            return
        s = self.session.settings
        self._run(lambda: _load_builtin(key, s.device, s.precision),
                  lambda found: self.use_bundle(found[0], key, compile=found[1]),
                  f"Loading {key} on {s.device}…", f"Could not load {key}: ")

    def load_file(self, path: str, classifier_path: str | None = None, flags: str = "",
                  apply_sampling: bool = True) -> None:
        """A model file or folder with an optional classifier and flags. With `apply_sampling`, the
        sampling flags among them (e.g. --timestep_respacing ddim25 --classifier_scale 3) set the panels
        once the model is loaded."""
        s = self.session.settings
        name = Path(path).name

        def done(found: tuple[Any, Any, bool]) -> None:
            bundle, plan, wanted = found
            self._file_sources[path] = (path, classifier_path, flags)
            if path not in {row[0] for row in self._file_rows}:
                self._file_rows.append((path, f"{bundle.name} — {name}", path))
                self._emit_rows()
            self.use_bundle(bundle, path, source=path, compile=wanted and not classifier_path and not flags.strip())
            if apply_sampling and plan.sampling:
                self.session.apply_sampling(plan.sampling)
                self.status.emit(f"{bundle.name} ready; from the flags: " + "; ".join(plan.applied))

        self._run(lambda: _load_file(path, classifier_path, flags, s.device, s.precision), done,
                  f"Loading {name}…", f"Could not open {name}: ")

    def source(self, key: str) -> tuple[str, str | None, str] | None:
        """(path, classifier path, flags) of a model opened from a file or folder, else None."""
        return self._file_sources.get(key)

    def reload(self) -> None:
        """Load the current model again (after a device or precision change)."""
        if self.key:
            self.load(self.key)

    def use_bundle(self, bundle: Any, key: str, source: str | None = None, compile: bool = False) -> None:
        """Make `bundle` the current model. compile: start compiling its network for this CPU in the
        background (`compiling.NetworkCompiler`; the loaders say whether that is worth it)."""
        self.bundle = bundle
        self.key = key
        caps = ModelCaps.from_bundle(bundle, source)
        self.session.set_caps(caps)
        fast = " with its network compiled for this CPU" if bundle.compiled is not None else ""
        self.status.emit(f"{bundle.name} ready on {bundle.device} ({bundle.precision}){fast}.")
        self.loaded.emit(bundle.name)
        self.compiler.consider(bundle, key, compile)
        if caps.is_points:
            self._start_backdrop(bundle)

    def _start_backdrop(self, bundle: Any) -> None:
        from .views.backdrop import data_backdrop

        self._backdrop_cancelled.set()  # the last model's backdrop, if it is still being sampled
        cancelled = self._backdrop_cancelled = threading.Event()
        task = BackgroundTask(lambda: data_backdrop(bundle, cancelled=cancelled), "Could not draw the data backdrop: ",
                              self, thread_name="backdrop", daemon=False)

        def ready(found: tuple[Any, Any] | None) -> None:
            if found is not None and bundle is self.bundle:
                self.backdrop_ready.emit(*found)

        task.done.connect(ready)
        task.failed.connect(self.status.emit)  # a missing backdrop is cosmetic: status line only
        self._backdrop_task = task
        task.start()

    def shutdown(self, timeout: float) -> None:
        """Before the app exits: stop a backdrop being sampled, and wait up to `timeout` s for it and for a model
        being loaded to end (the interpreter waits for what is left of them before it exits)."""
        self.compiler.stop()
        self._backdrop_cancelled.set()
        deadline = time.monotonic() + timeout
        for task in (self._backdrop_task, self._task):
            if task is not None:
                task.wait(max(0.0, deadline - time.monotonic()))
