"""The main window's results features: save, open a run or PNG (menu or drag-and-drop), export GIF,
the library dock (every finished run is recorded, and reopens as it was), compare and sweep windows.

`ResultsController(window)` adds its actions, menus and dock to an existing `MainWindow` and talks to
it only through the window's public surface: `session`, `loader`, `bundle`, `model_panel`,
`current_result()`, `show_error()`, `statusBar()`, the `run_finished` / `model_loaded` signals and
its File and View menus.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMessageBox, QWidget

from core.fileio import SaveError
from core.infotext import CHUNK_KEY as INFOTEXT_KEY, Infotext, parse_infotext, settings_from_infotext
from core.pngmeta import CHUNK_KEY, read_text_chunks
from core.runs import RunResult, read_run

from . import limits
from .compare.sweep import SweepSpec
from .compare.sweep_window import SweepWindow
from .compare.window import CompareWindow
from .library.export import export_gif
from .library.gallery import GalleryWidget
from .library.pngio import SavedFiles, default_stem, save_result
from .library.store import GroupEntry, Library, LibraryEntry, PreparedGroup
from .run.reopen import Reopener
from .tasks import BackgroundTask, SerialTasks

RECORD_WAIT_S = 3.0  # at close, how long to let runs still being saved finish


def _dropped_path(event: Any) -> str | None:
    """The first local .png or .npz (run) file a drag carries, or None."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and url.toLocalFile().lower().endswith((".png", ".npz")):
            return url.toLocalFile()
    return None


class ResultsController(QObject):
    """Owns the library, gallery dock, compare and sweep windows of one main window.

    `run_recorded(LibraryEntry)` follows each recorded run: its PNGs and thumbnail are made on a
    helper thread (the GUI stays responsive), then the entry is listed on the GUI thread.
    """

    run_recorded = Signal(object)
    run_reopened = Signal(str)  # the banner, once a reopened run is on screen
    sweep_recorded = Signal(object)  # GroupEntry, once a finished sweep is in the library
    sweep_reopened = Signal(str)  # the banner, once a reopened sweep's grid is shown

    def __init__(self, window: Any, library: Library | None = None):
        super().__init__(window)
        self.window = window
        self.last_entry: LibraryEntry | None = None
        self.last_saved: SavedFiles | None = None
        self._pending: tuple[str, Any] | None = None
        self.note_box: QMessageBox | None = None
        self.reopener = Reopener(window, self.reopen)
        self.reopener.reopened.connect(self.run_reopened)
        self._recorder = SerialTasks("Could not record the run in the library: ", self, background=True)
        self._recorder.done.connect(self._on_prepared)
        self._recorder.failed.connect(self._on_record_failed)
        try:
            self.library = library if library is not None else Library()
        except ValueError as exc:
            self.library = None
            self._library_error = str(exc)
        if self.library is not None and self.library.notice:  # said once, when the window is up
            QTimer.singleShot(0, lambda: window.show_error(self.library.notice))
        self.compare = CompareWindow(window)
        self.compare.setWindowFlag(Qt.WindowType.Window)
        self.sweep = SweepWindow(window.session.request, lambda: window.bundle, window)
        self.sweep.setWindowFlag(Qt.WindowType.Window)
        self.sweep.sweep_finished.connect(self.record_sweep)
        self._group_task: BackgroundTask | None = None
        self._create_actions()
        self._create_dock()
        window.run_finished.connect(self.record)
        window.model_loaded.connect(self._on_model_loaded)
        window.setAcceptDrops(True)
        window.installEventFilter(self)

    # --- construction ----------------------------------------------------------------------------

    def _action(self, text: str, slot: Any, shortcut: Any = None, tip: str = "") -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _create_actions(self) -> None:
        w = self.window
        self.save_action = self._action("&Save result…", self.save_dialog, QKeySequence.StandardKey.Save,
                                        "Save the last run as PNGs with every setting embedded")
        self.open_png_action = self._action("Open &run or PNG…", self.open_file_dialog, "Ctrl+Shift+O",
                                            "Show a saved run as it was and restore its settings (a PNG saved by "
                                            "Guidance Studio or its CLI, or a run file .npz)")
        self.gif_action = self._action("Export trajectory &GIF…", self.export_gif_dialog, "Ctrl+G",
                                       "Save the last run's steps as an animated GIF (x_t and x̂0)")
        self.sweep_action = self._action("S&weep…", self.show_sweep, "Ctrl+Shift+W",
                                         "Run a grid of runs over one parameter and several seeds")
        self.compare_action = self._action("&Compare selected runs", self.compare_selected, "Ctrl+Shift+C",
                                           "Compare the runs selected in the library")
        self.picture_action = self._action("Show a &picture in Compare…", self.show_picture_dialog, None,
                                           "Open any PNG (e.g. the metrics trade-off plot) in the Compare window")
        menu = w.file_menu
        first_separator = next((a for a in menu.actions() if a.isSeparator()), None)
        menu.insertActions(first_separator, [self.open_png_action, self.save_action, self.gif_action])
        menu.insertSeparator(self.open_png_action)
        self.tools_menu = w.menuBar().addMenu("&Tools")
        for action in (self.sweep_action, self.compare_action, self.picture_action):
            self.tools_menu.addAction(action)

    def _create_dock(self) -> None:
        if self.library is not None:
            self.gallery: GalleryWidget | None = GalleryWidget(self.library)
            self.gallery.reopen_requested.connect(self.reopener.open_entry)
            self.gallery.reopen_group_requested.connect(self.reopen_group)
            self.gallery.compare_requested.connect(self.show_compare)
            content: QWidget = self.gallery
        else:
            self.gallery = None
            content = QLabel(f"The run library is unavailable: {self._library_error}")
            content.setWordWrap(True)
        self.dock = QDockWidget("Library", self.window)
        self.dock.setObjectName("library")  # saveState needs object names
        self.dock.setWidget(content)
        self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.window.view_menu.addAction(self.dock.toggleViewAction())

    # --- recording and reopening -----------------------------------------------------------------

    def record(self, result: RunResult) -> bool:
        """Save a finished run into the library in the background; `run_recorded` follows.
        A run stopped before its first step, or any run while the library is read-only, is skipped (False)."""
        if self.gallery is None or self.library.read_only or (not result.completed and len(result) <= 1):
            return False
        library = self.library
        try:
            entry_id = library.reserve(result)  # the row, hidden until its files are written
        except sqlite3.Error as exc:
            self.window.statusBar().showMessage(f"Could not record the run in the library: {exc}")
            return False
        self._recorder.submit(entry_id, lambda: library.write_files(entry_id, result))
        return True

    def recording(self) -> int:
        """How many finished runs are still being saved."""
        return self._recorder.pending()

    def record_sweep(self, completed: bool) -> bool:
        """Save the sweep just run as one group in the library: every cell's run and the grid, in the
        background (`sweep_recorded` follows). False when there is nothing to save or nowhere to."""
        sweep = self.sweep
        if self.gallery is None or self.library.read_only or sweep.spec is None or not sweep.cells:
            return False
        results = {key: cell.result for key, cell in sweep.cells.items()}
        settings = {**sweep.spec.to_dict(), "completed": bool(completed), "title": sweep.spec.title(sweep.model_name)}
        try:
            group_id, ids = self.library.reserve_group("sweep", sweep.model_name, settings, results)
        except sqlite3.Error as exc:
            self.window.statusBar().showMessage(f"Could not record the sweep in the library: {exc}")
            return False
        library, picture, meta = self.library, sweep.grid_picture(), sweep.grid_meta()
        runs = {ids[key]: result for key, result in results.items()}
        self._recorder.submit(("group", group_id), lambda: library.write_group_files(group_id, runs, picture, meta))
        return True

    def _on_prepared(self, tag: Any, prepared: Any) -> None:
        try:
            saved = self.library.finish_group(prepared) if isinstance(prepared, PreparedGroup) \
                else self.library.finish(prepared)
        except (ValueError, sqlite3.Error) as exc:
            self.window.statusBar().showMessage(f"Could not record the run in the library: {exc}")
            self._on_record_failed(tag, "")
            return
        if isinstance(saved, GroupEntry):
            if self.gallery is not None:
                self.gallery.show_group(saved)
            self.sweep_recorded.emit(saved)
            return
        self.last_entry = saved
        if self.gallery is not None:
            self.gallery.show_entry(saved)
        self.run_recorded.emit(saved)

    def _on_record_failed(self, tag: Any, message: str) -> None:
        """Saving failed (full disk, unwritable folder): nothing of the run (or sweep) stays in the library."""
        try:
            if isinstance(tag, tuple):
                self.library.abandon_group(tag[1])
            else:
                self.library.abandon(tag)
        except sqlite3.Error:
            pass  # the row stays marked as being saved; the next start-up removes it
        if message:
            self.window.statusBar().showMessage(message)

    def reopen_group(self, group: GroupEntry) -> bool:
        """Show a sweep from the library as its grid, every cell scrubbable (its runs are read on a
        helper thread); False with a message when its record cannot be used."""
        try:
            spec = SweepSpec.of_group(group.settings, group.cells)
        except ValueError as exc:
            self.window.show_error(f"Cannot reopen sweep #{group.id}: {exc}")
            return False
        if self.sweep.is_running():
            self.window.show_error("A sweep is running: stop it before reopening another.")
            return False
        members = {e.id: e for e in self.library.list(group_id=group.id)}
        paths = {(r, c): members[i].run_path for r, c, i in group.cells
                 if i in members and members[i].run_path is not None}
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(group.created))
        banner = f"Reopened sweep #{group.id} from {when}" + ("" if group.completed else " (stopped early)")
        task = BackgroundTask(lambda: {key: read_run(path) for key, path in paths.items()},
                              f"Cannot reopen sweep #{group.id}: ", self)
        task.done.connect(lambda results: self._show_group(spec, group.model, results, banner))
        task.failed.connect(self.window.show_error)
        self._group_task = task.start()
        return True

    def _show_group(self, spec: SweepSpec, model: str, results: dict, banner: str) -> None:
        try:
            self.sweep.show_group(spec, model, results, banner)
        except ValueError as exc:
            self.window.show_error(str(exc))
            return
        self.show_sweep()
        self.sweep_reopened.emit(banner)

    def reopen(self, model_name: str, request: Any) -> bool:
        """Put `request`'s settings into the window, loading `model_name` if another is loaded.

        False (with a message, nothing changed) while a run or a model load is in progress, or when a
        setting is outside the panels' limits.
        """
        w = self.window
        if w.is_running() or w.loader.busy:
            w.show_error("Stop the current run (or wait for the model to load) before restoring settings.")
            return False
        try:
            w.session.apply_request(request, model_name)
        except ValueError as exc:
            w.show_error(str(exc))
            return False
        bundle = w.bundle
        if bundle is not None and bundle.name == model_name:
            w.statusBar().showMessage(f"Settings restored ({model_name}, seed {request.seed}).")
            return True
        key = self._model_key(model_name)
        if key is None:
            w.statusBar().showMessage(f"Settings restored, but the model {model_name!r} is not open: "
                                      "open its checkpoint to use them.")
            return True
        self._pending = (model_name, request)
        w.loader.load(key)
        return True

    def _model_key(self, model_name: str) -> str | None:
        rows = self.window.model_panel.models
        for i in range(rows.count()):
            item = rows.item(i)
            key = item.data(Qt.ItemDataRole.UserRole)
            if key == model_name or item.text().startswith(f"{model_name} — "):
                return key
        return None

    def _on_model_loaded(self, name: str) -> None:
        if self._pending is not None and self._pending[0] == name:
            model_name, request = self._pending
            self._pending = None
            try:
                self.window.session.apply_request(request, model_name)  # again, now with the model's limits
            except ValueError as exc:
                self.window.show_error(str(exc))
                return
            self.window.statusBar().showMessage(f"Settings restored ({model_name}, seed {request.seed}).")

    def open_file(self, path: str | Path) -> bool:
        """Show a saved run (a PNG with its run file beside it, a PNG alone, or a run file) and restore
        every setting, or put into the panels what maps of the `parameters` of another Stable Diffusion
        tool's PNG; False (with a message) when the file is neither."""
        if Path(path).suffix.lower() == ".png":
            try:
                chunks = read_text_chunks(path)
            except ValueError as exc:
                self.window.show_error(str(exc))
                return False
            if CHUNK_KEY not in chunks and INFOTEXT_KEY in chunks:
                return self.apply_infotext(Path(path).name, parse_infotext(chunks[INFOTEXT_KEY]))
        return self.reopener.open_file(path)

    def apply_infotext(self, file_name: str, info: Infotext) -> bool:
        """Put what maps of another tool's generation parameters into the panels, and say what did not."""
        w = self.window
        if w.is_running() or w.loader.busy:
            w.show_error("Stop the current run (or wait for the model to load) before restoring settings.")
            return False
        changes, applied, skipped = settings_from_infotext(info)
        for name, value in list(changes.items()):  # the panels' limits hold for other tools' values too
            problem = limits.SETTINGS[name].problem(value) if name in limits.SETTINGS else None
            if problem:
                del changes[name]
                skipped.append(f"{name}: {problem}")
        w.session.update(**changes)
        reasons = w.session.availability()
        for key, what in (("prompt", "prompt"), ("size", "Size")):
            if reasons[key] and any(a.startswith(what) for a in applied):
                skipped.append(f"{what}: kept for later, but {reasons[key][0].lower()}{reasons[key][1:]}")
        if changes.get("guidance") == "cfg" and w.session.settings.guidance != "cfg":
            skipped.append(f"CFG scale: {reasons['guidance:cfg']}")
        text = f"From {file_name} (written by another tool): {', '.join(applied) or 'nothing'}."
        w.statusBar().showMessage(text)
        if skipped:
            text += "\n\nNot used:\n" + "\n".join(skipped)
        self.show_note(text)
        return True

    def show_note(self, text: str) -> None:
        """A non-blocking information box (what a restore did and did not do)."""
        if self.note_box is not None:
            self.note_box.close()
        box = QMessageBox(QMessageBox.Icon.Information, "Guidance Studio", text, QMessageBox.StandardButton.Ok,
                          self.window)
        box.setModal(False)
        box.open()
        self.note_box = box

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        kind = event.type()
        if obj is self.window and kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if _dropped_path(event):
                event.acceptProposedAction()
                return True
        elif obj is self.window and kind == QEvent.Type.Drop:
            path = _dropped_path(event)
            if path:
                event.acceptProposedAction()
                self.open_file(path)
                return True
        return super().eventFilter(obj, event)

    def shutdown(self) -> None:
        """At close, after the last run has been handed over: stop a sweep (within one step), let runs
        being saved finish (their files are atomic anyway), and end the saving thread."""
        self.sweep.shutdown(timeout=1.0)
        self._recorder.close(RECORD_WAIT_S)

    # --- saving and exporting --------------------------------------------------------------------

    def _result_or_error(self) -> RunResult | None:
        result = self.window.current_result()
        if result is None:
            self.window.show_error("There is no result yet: run the sampler first.")
        return result

    def save_to(self, path: str | Path) -> SavedFiles | None:
        """Save the last run as `path` (the grid) plus per-sample PNGs beside it."""
        result = self._result_or_error()
        if result is None:
            return None
        path = Path(path)
        try:
            self.last_saved = save_result(result, path.parent, stem=path.stem)
        except SaveError as exc:
            self.window.show_error(str(exc))
            return None
        count = len(self.last_saved.all)
        self.window.statusBar().showMessage(f"Saved {count} PNG{'s' if count > 1 else ''} in {path.parent}.")
        return self.last_saved

    def _ask_save_path(self, title: str, suffix: str, file_filter: str) -> str | None:
        """A path (ending in `suffix`) to save the current result to, or None (no result, or cancelled)."""
        result = self._result_or_error()
        if result is None:
            return None
        path, _ = QFileDialog.getSaveFileName(self.window, title, f"{default_stem(result)}{suffix}", file_filter)
        if not path:
            return None
        return path if path.lower().endswith(suffix) else f"{path}{suffix}"

    def save_dialog(self) -> None:
        path = self._ask_save_path("Save result", ".png", "PNG images (*.png)")
        if path:
            self.save_to(path)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a run or a PNG", "",
                                              "Runs and PNGs (*.png *.npz);;PNG images (*.png);;Run files (*.npz)")
        if path:
            self.open_file(path)

    def export_gif_to(self, path: str | Path) -> Path | None:
        result = self._result_or_error()
        if result is None:
            return None
        try:
            written = export_gif(result, path)
        except (SaveError, ValueError) as exc:
            self.window.show_error(str(exc))
            return None
        self.window.statusBar().showMessage(f"Exported {Path(written).name}.")
        return written

    def export_gif_dialog(self) -> None:
        path = self._ask_save_path("Export trajectory GIF", ".gif", "GIF animations (*.gif)")
        if path:
            self.export_gif_to(path)

    # --- compare and sweep -----------------------------------------------------------------------

    def show_compare(self, entries: list[LibraryEntry]) -> None:
        self.compare.set_entries(entries)
        self.compare.show()
        self.compare.raise_()

    def compare_selected(self) -> None:
        entries = self.gallery.selected_entries() if self.gallery is not None else []
        if len(entries) < 2:
            self.window.show_error("Select two or more runs in the Library dock to compare them.")
            return
        self.show_compare(entries)

    def show_picture_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Show a picture", "", "Images (*.png *.jpg *.gif)")
        if not path:
            return
        try:
            self.compare.show_image_file(path)
        except ValueError as exc:
            self.window.show_error(str(exc))
            return
        self.compare.show()
        self.compare.raise_()

    def show_sweep(self) -> None:
        self.sweep.show()
        self.sweep.raise_()
