"""Reopening a saved run so that it shows as it was: a library entry, a PNG, or a run file (app or CLI).

`Reopener.open_entry` / `open_file` restore the run's settings through the window's `restore(model,
request)` (which may start loading the run's model), read its run file on a helper thread, and once
both are done put it on the window (`show_run`: both panes, the scrubber over all its steps, its
curves, and a "Reopened run #N from <date>" banner that the next Start replaces). Without a run file
(entries saved before run files existed, a PNG copied away from it) the final picture is shown.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Signal

from core.pngmeta import read_metadata, read_settings
from core.runs import RUN_SUFFIX, RunResult, read_run, read_run_meta

from ..tasks import BackgroundTask


def _when(seconds: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
    except (OverflowError, OSError, ValueError):  # a damaged or hand-edited time stamp
        return "an unknown date"


def _picture(path: Path | None, thumbnail: bytes | None) -> np.ndarray | None:
    """A saved picture as (H, W, 3) uint8, else the thumbnail, else None."""
    from io import BytesIO

    from PIL import Image

    sources = ([path] if path is not None and path.is_file() else []) + ([BytesIO(thumbnail)] if thumbnail else [])
    for source in sources:
        try:
            with Image.open(source) as img:
                return np.asarray(img.convert("RGB"))
        except (OSError, ValueError):
            continue
    return None


class Reopener(QObject):
    """Shows saved runs on `window` (a MainWindow). `reopened(banner)` once one is on screen;
    `restore(model_name, request) -> bool` puts the settings back (False: refused, with a message)."""

    reopened = Signal(str)

    def __init__(self, window: Any, restore: Callable[[str, Any], bool]):
        super().__init__(window)
        self.window = window
        self.restore = restore
        self._token = 0
        self._data: tuple[str, Any] | None = None  # ("run", RunResult) or ("still", picture), once read
        self._banner = ""
        self._waiting_for_model = False
        self._task: BackgroundTask | None = None
        window.model_loaded.connect(lambda _name: self._model_ready())
        window.loader.failed.connect(lambda _message: self._model_ready())

    # --- what to open ----------------------------------------------------------------------------

    def open_entry(self, entry: Any) -> bool:
        """A library entry (`store.LibraryEntry`); False when its settings cannot be restored."""
        try:
            request = entry.request
        except (TypeError, ValueError) as exc:
            self.window.show_error(f"Cannot reopen run #{entry.id}: {exc}")
            return False
        banner = f"Reopened run #{entry.id} from {_when(entry.created)}"
        if not entry.completed:
            banner += " (stopped early)"
        return self._open(entry.model, request, banner, entry.run_path, entry.image_path, entry.thumbnail)

    def open_file(self, path: str | Path) -> bool:
        """A PNG saved by the app or the CLI (its run file beside it, if any, is shown too) or a run
        file (`.run.npz`, or `python -m core sample --out run.npz`); False with a message otherwise."""
        path = Path(path)
        try:
            if path.suffix.lower() == ".npz":
                meta = read_run_meta(path)
                from core import SamplingRequest

                model, request = str(meta["model"]), SamplingRequest.from_dict(meta["request"])
                run_path, picture = path, None
            else:
                model, request = read_settings(path)
                meta = read_metadata(path)
                name = meta.get("run_file")
                run_path = path.parent / name if isinstance(name, str) and name.endswith(RUN_SUFFIX) else None
                picture = path
        except (TypeError, ValueError) as exc:
            self.window.show_error(str(exc) if isinstance(exc, ValueError) else f"{path.name}: {exc}")
            return False
        created = meta.get("timestamp")
        when = f" (run from {_when(created)})" if isinstance(created, (int, float)) else ""
        return self._open(model, request, f"Opened {path.name}{when}", run_path, picture, None)

    # --- the steps -------------------------------------------------------------------------------

    def _open(self, model: str, request: Any, banner: str, run_path: Path | None, picture_path: Path | None,
              thumbnail: bytes | None) -> bool:
        if not self.restore(model, request):
            return False
        self._token += 1
        token = self._token
        self._banner, self._data = banner, None
        self._waiting_for_model = bool(self.window.loader.busy)
        if run_path is not None and run_path.is_file():
            task = BackgroundTask(lambda: read_run(run_path), "", self)
            task.done.connect(lambda result: self._ready(token, ("run", result)))
            task.failed.connect(lambda message: self._unreadable(token, message, picture_path, thumbnail))
            self._task = task.start()
        else:
            note = "" if run_path is None else f" — its run file {run_path.name} is missing"
            self._still(token, picture_path, thumbnail, note)
        return True

    def _unreadable(self, token: int, message: str, picture_path: Path | None, thumbnail: bytes | None) -> None:
        if token == self._token:
            self.window.statusBar().showMessage(f"The run's steps cannot be shown: {message}")
            self._still(token, picture_path, thumbnail, " — its run file cannot be read")

    def _still(self, token: int, picture_path: Path | None, thumbnail: bytes | None, note: str) -> None:
        picture = _picture(picture_path, thumbnail)
        if picture is None:
            self.window.statusBar().showMessage("Settings restored; this run has no picture to show.")
            return
        self._banner += f"{note}: final image only"
        self._ready(token, ("still", picture))

    def _ready(self, token: int, data: tuple[str, Any]) -> None:
        if token != self._token:
            return  # a later reopen replaced this one
        self._data = data
        self._show()

    def _model_ready(self) -> None:
        if self._waiting_for_model:
            self._waiting_for_model = False
            self._show()

    def _show(self) -> None:
        if self._data is None or self._waiting_for_model:
            return
        kind, value = self._data
        self._data = None
        if kind == "run" and len(value) == 0:  # a run file with its final samples only (a chunked CLI run)
            from ..library.pngio import result_picture

            kind, value = "still", result_picture(value)
            self._banner += ": final samples only (saved without its steps)"
        if kind == "run":
            result: RunResult = value
            self.window.show_run(result, self._banner)
        else:
            self.window.show_still(value, self._banner)
        self.reopened.emit(self._banner)
