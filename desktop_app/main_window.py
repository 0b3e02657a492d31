"""The studio's main window: panels in a dock, live views in the centre, per-step plots below.

Nothing here imports torch at module level: the window shows first, then `begin_startup()` loads
the engine and the default model in the background (`models.ModelLoader`).
"""
from __future__ import annotations

import functools
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, QCoreApplication, QEvent, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .models import ModelLoader
from .panels import GuidancePanel, ModelPanel, PromptPanel, RunPanel, SamplerPanel
from .panels.widgets import set_quietly
from .results_controller import ResultsController
from .session import Session
from .tasks import Turns, while_showing
from .views.guidance_dock import GuidanceViews
from .views.live import LiveViews, class_colors
from .views.plots import CURVE_KEYS, PlotsPane

CLOSE_WAIT_S = 1.5
FRAME_INTERVAL_MS = 33  # paint at most ~30 frames a second; the worker coalesces the rest
GUIDANCE_DOCK_WIDTH = 440  # px: room for the maps of one sample beside the batch
POINTS_GUIDANCE_DOCK_WIDTH = 330  # px on 2-D models (toggles and two plots): the square panes get the rest
PLOT_INTERVAL_S = 0.15  # the per-step curves are redrawn a few times a second while running


def settle_garbage() -> None:
    """Collect what is garbage now, then move every surviving object out of the collector's sight: the engine's,
    Qt's and the model's objects live on, and a full collection over them during a run stalled every thread,
    the GUI's too, for ~100 ms (bench/ui_latency.py --profile). Later full collections scan only newer objects."""
    gc.unfreeze()  # the objects of a model loaded before are collected if they are garbage now
    gc.collect()
    gc.freeze()


class MainWindow(QMainWindow):
    """Signals: `run_finished(RunResult)` after every run (also when stopped), `frame_shown(int)`
    when a live frame is painted, `model_loaded(str)`, `error_shown(str)`."""

    run_finished = Signal(object)
    frame_shown = Signal(int)
    model_loaded = Signal(str)
    error_shown = Signal(str)

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Guidance Studio")
        self.settings = settings if settings is not None else QSettings("GuidanceStudio", "Guidance Studio")
        self.session = Session()
        self.worker: Any = None
        self._running = False
        self.last_error: str | None = None
        self.first_frame_at: float | None = None
        self.started_at: float | None = None
        self._result: Any = None
        self._message_box: QMessageBox | None = None
        self.open_dialog: Any = None
        self._last_paint = 0.0
        self._last_plot = 0.0
        # A live frame is taken in a turn of its own (Turns: one part of any Turns in a pass of the event loop):
        # taken in the signal that says it is ready, its work fell into one batch of posted events with the
        # repaints of graphics scenes queued before it (frame 4-7 ms, scenes 3-8 ms, in one pass). It waits for
        # the turns of the frame before (`after`, set once the views exist): taken in between, its work and the
        # repaints it set off fell into the same pass as the ones still to come (15-24 ms at once).
        self._frames = Turns(self)
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._take_frame_in_a_turn)
        self._refreshes = Turns(self)  # the throttled redraws of a live run still to do
        # A started run's guidance views and plots are reset in event-loop turns after Start's own, each after the
        # repaint the one before posted, and its worker begins after theirs. Begun at once, its thread took a core
        # and the interpreter lock while the GUI thread painted the new run's empty plots; reset in Start's turn,
        # every view's repaint came at once (gaps of 15-21 ms after Start in bench/ui_latency.py).
        self._starting = Turns(self)
        self._finishing = Turns(self)  # what is left of ending a run (_on_finished)
        self.loader = ModelLoader(self.session, self)
        self.create_widgets()
        # a frame's panes are painted first, then the throttled redraws or the end of a run, a turn each
        self._refreshes.after = self._finishing.after = self.views.paints
        self._frames.after = (self.views.paints, self._refreshes)
        self.create_actions()
        self.create_menus()
        self.create_docks()
        self.results = ResultsController(self)  # save/open PNG, GIF, library dock, compare, sweep
        self.tabifyDockWidget(self.results.dock, self.guidance_dock)  # Library | Guidance, one beside the other
        self.resizeDocks([self.guidance_dock], [POINTS_GUIDANCE_DOCK_WIDTH], Qt.Orientation.Horizontal)  # 2-D panes
        self.loader.busy_changed.connect(self._update_enabled)
        self.loader.loaded.connect(self._on_model_loaded)
        self.loader.failed.connect(self.show_error)
        self.loader.status.connect(self.statusBar().showMessage)
        self.loader.backdrop_ready.connect(self.views.set_backdrop)
        self.loader.models_listed.connect(self.model_panel.set_models)
        self.session.subscribe(lambda _: self._update_enabled())
        self.session.subscribe(lambda _: self._span_empty_plots())
        self.settings_note: str | None = None  # said on the status line once the first model is loaded
        self.restore_state()
        self._update_enabled()
        self.statusBar().showMessage(self.settings_note or "Starting…")

    # --- construction ----------------------------------------------------------------------------

    def create_widgets(self) -> None:
        self.views = LiveViews()
        self.plots_pane = PlotsPane()
        self.plots = self.plots_pane.plots
        self.plots_pane.exact_box.toggled.connect(lambda on: self.session.update(exact_curves=on))
        self.session.subscribe(lambda s: set_quietly(self.plots_pane.exact_box, s.settings.exact_curves))
        self.views.exact_decode_box.toggled.connect(lambda on: self.session.update(exact_decode=on))
        self.session.subscribe(lambda s: set_quietly(self.views.exact_decode_box, s.settings.exact_decode))
        self.model_panel = ModelPanel(self.session)
        self.prompt_panel = PromptPanel(self.session)
        self.sampler_panel = SamplerPanel(self.session)
        self.guidance_panel = GuidancePanel(self.session)
        self.run_panel = RunPanel(self.session)
        self.guidance = GuidanceViews(self.views, self)
        self.setCentralWidget(self.views)
        self.views.step_shown.connect(self._on_step_shown)
        self.views.step_shown.connect(self.guidance.show_step)
        self.run_panel.start_button.clicked.connect(self.start_run)
        self.run_panel.stop_button.clicked.connect(self.stop_run)
        self.run_panel.pause_button.toggled.connect(self.pause_run)
        self.run_panel.step_button.clicked.connect(self.step_run)
        self.run_panel.run_to_button.clicked.connect(lambda: self.run_to(self.run_panel.run_to_box.value()))
        self.model_panel.model_chosen.connect(self.loader.load)
        self.model_panel.open_requested.connect(self.open_model_dialog)
        self.model_panel.reload_requested.connect(self.loader.reload)

    def create_actions(self) -> None:
        self.open_action = QAction("&Open model…", self, shortcut=QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self.open_model_dialog)
        self.quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.close)
        self.start_action = QAction("&Start", self, shortcut=QKeySequence("Ctrl+Return"))
        self.start_action.triggered.connect(self.start_run)
        self.stop_action = QAction("S&top", self, shortcut=QKeySequence("Escape"))
        self.stop_action.triggered.connect(self.stop_run)
        self.play_action = QAction("&Play / pause replay", self, shortcut=QKeySequence("Space"))
        self.play_action.triggered.connect(self.views.play_button.toggle)
        self.step_actions = []
        for text, keys, delta in (("Step &back", "Left", -1), ("Step &forward", "Right", 1),
                                  ("10 steps back", "Shift+Left", -10), ("10 steps forward", "Shift+Right", 10)):
            action = QAction(text, self, shortcut=QKeySequence(keys))  # text fields keep their arrow keys
            action.triggered.connect(lambda _checked=False, d=delta: self.views.player.step_by(d))
            self.step_actions.append(action)
        self.dice_action = QAction("&Random seed", self, shortcut=QKeySequence("Ctrl+R"))
        self.dice_action.triggered.connect(self.sampler_panel.roll_seed)
        self.pause_action = QAction("P&ause / resume the run", self, shortcut=QKeySequence("F8"))
        self.pause_action.triggered.connect(self.run_panel.pause_button.toggle)
        self.step_action = QAction("One s&tep", self, shortcut=QKeySequence("F10"))
        self.step_action.triggered.connect(self.step_run)
        self.help_action = QAction("&What am I looking at?", self, shortcut=QKeySequence.StandardKey.HelpContents)
        self.help_action.triggered.connect(self.show_help)

    def create_menus(self) -> None:
        bar = self.menuBar()
        self.file_menu = bar.addMenu("&File")
        self.file_menu.addAction(self.open_action)
        self.file_menu.addSeparator()
        self.file_menu.addAction(self.quit_action)
        self.run_menu = bar.addMenu("&Run")
        for action in (self.start_action, self.stop_action, self.pause_action, self.step_action, self.play_action,
                       *self.step_actions, self.dice_action):
            self.run_menu.addAction(action)
        self.view_menu = bar.addMenu("&View")
        self.help_menu = bar.addMenu("&Help")
        self.help_menu.addAction(self.help_action)

    def create_docks(self) -> None:
        panels = QWidget()
        column = QVBoxLayout(panels)
        column.setContentsMargins(4, 4, 4, 4)
        for widget in (self.model_panel, self.prompt_panel, self.sampler_panel, self.guidance_panel):
            column.addWidget(widget)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(panels)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(panels.sizeHint().width() + 20)
        side = QWidget()  # the settings scroll; Start/Stop and progress always visible below them
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 4)
        side_layout.addWidget(scroll, 1)
        side_layout.addWidget(self.run_panel)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.BottomDockWidgetArea)  # plots: full width
        self.settings_dock = self._dock("Settings", "settings", side, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.plots.setMinimumHeight(150)
        plots_row = QWidget()  # the class bars sit next to the target's p(y|x_t) curve
        row = QHBoxLayout(plots_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.guidance.bars, 1)
        row.addWidget(self.plots_pane, 3)
        self.plots_dock = self._dock("Per-step plots", "plots", plots_row, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([self.plots_dock], [220], Qt.Orientation.Vertical)
        self.guidance_dock = self._dock("Guidance", "guidance", self.guidance.panel,
                                        Qt.DockWidgetArea.RightDockWidgetArea)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState needs object names
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    # --- start-up and persistence -----------------------------------------------------------------

    def begin_startup(self) -> None:
        """Load the engine, list the models and load the last (or default) one, in the background."""
        source = None
        try:
            path, classifier, flags = json.loads(str(self.settings.value("model_source", "") or "null") or "null")
            source = (str(path), str(classifier) if classifier else None, str(flags))
        except (ValueError, TypeError):
            pass  # no file model last time, or an unreadable entry: start from the key alone
        self.loader.start_engine(str(self.settings.value("model_key", "") or ""), source)

    def restore_state(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        state = self.settings.value("window_state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        text = self.settings.value("session")
        if text:
            try:
                data = json.loads(str(text))
            except (ValueError, RecursionError):
                data = None  # unreadable saved settings: keep the defaults, and say so
            notes = self.session.load_dict(data)
            if notes:
                self.settings_note = ("Some settings of the last session could not be used and are back to "
                                      f"their defaults: {', '.join(notes)}.")

    def save_state(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("session", json.dumps(self.session.to_dict()))
        if self.loader.key:
            self.settings.setValue("model_key", self.loader.key)
            self.settings.setValue("model_source", json.dumps(self.loader.source(self.loader.key)))
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop a running worker (it ends within one step) and hand its stopped run to the library now,
        let the results finish saving, and save the window state: every thread has ended afterwards."""
        self._starting.cancel()  # a run not begun yet never begins
        running = self.worker is not None and self.worker.is_running()
        if running:
            self.worker.stop()
        self.hide()  # gone for the user at once; what follows finishes the run's saving
        if running and self.worker.wait(CLOSE_WAIT_S):
            QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall)  # its `finished` …
        self._finishing.finish_now()  # … and `run_finished`: recorded
        self.guidance.field.close(CLOSE_WAIT_S)
        self.loader.shutdown(CLOSE_WAIT_S)
        self.views.play_button.setChecked(False)
        self.results.shutdown()
        self.save_state()
        event.accept()

    # --- models ----------------------------------------------------------------------------------

    @property
    def bundle(self) -> Any:
        return self.loader.bundle

    def open_model_dialog(self) -> None:
        """Show the Open-model dialog (non-blocking); its Open loads what its summary describes."""
        from .open_dialog import OpenModelDialog

        if self.open_dialog is not None:
            self.open_dialog.close()
        dialog = OpenModelDialog(str(self.settings.value("open_folder", "") or ""), self.session.settings.precision,
                                 self)
        dialog.accepted.connect(lambda: self._open_planned(dialog.plan))
        self.open_dialog = dialog
        dialog.open()

    def _open_planned(self, plan: Any) -> None:
        self.settings.setValue("open_folder", str(Path(plan.model_path).parent))
        self.open_checkpoint(plan.model_path, plan.classifier_path, plan.flags)

    def open_checkpoint(self, path: str, classifier_path: str | None = None, flags: str = "") -> None:
        """Load a model file or pipeline folder in the background (errors are shown; the current model
        stays); sampling flags among `flags` set the panels once it has loaded."""
        self.loader.load_file(path, classifier_path, flags)

    def set_bundle(self, bundle: Any, key: str | None = None) -> None:
        """Use an already loaded `core.ModelBundle` (tests, or callers that built one)."""
        self.loader.use_bundle(bundle, key or bundle.name)

    def _on_model_loaded(self, name: str) -> None:
        caps = self.session.caps
        points = caps is None or caps.is_points
        if points != self.views.points_mode:  # another kind of model: the guidance dock's width suits it
            self.resizeDocks([self.guidance_dock], [POINTS_GUIDANCE_DOCK_WIDTH if points else GUIDANCE_DOCK_WIDTH],
                             Qt.Orientation.Horizontal)
        self.views.set_points_mode(points)
        self.views.set_latent(caps is not None and caps.is_latent)
        # The last run belongs to the previous model: nothing of it stays on screen (it can still be saved,
        # and it is in the library).
        self.views.reset()
        self.views.set_backdrop(None)
        self.plots.clear_curves()
        self._span_empty_plots()
        self.run_panel.show_idle()
        self.model_panel.select_key(self.loader.key)
        self.plots.set_notes(prob="" if caps and caps.has_classifier else "no classifier")
        self.guidance.set_model(caps is None or caps.is_points, bool(caps and caps.has_classifier))
        settle_garbage()  # after a load, not during the runs that follow
        if self.settings_note:
            self.statusBar().showMessage(self.settings_note)
            self.settings_note = None
        self.model_loaded.emit(name)

    # --- runs ------------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """From Start until the run's `finished`/`failed` signal has been handled."""
        return self._running

    def current_result(self) -> Any:
        """The RunResult on screen: the last finished (or stopped) run, or a reopened one; or None."""
        return self._result

    def show_run(self, result: Any, banner: str) -> None:
        """Put a finished or reopened run on screen as it was: both panes at its last step, the
        scrubber over all its steps, its curves, and `banner` above the panes until the next Start."""
        from .run.trajectory import Frames

        frames = Frames(result)
        self._result = result
        if self.guidance.points_mode != result.is_points:  # the run's model is not the one loaded
            self.guidance.set_model(result.is_points, has_classifier=False)
        self.guidance.begin(result, self.bundle)
        self._show_frames(frames, banner, result.request)
        self.guidance.refresh()
        steps = len(frames) - 1
        text = (f"{steps} steps in {result.seconds:.1f} s" if result.completed
                else f"stopped at step {steps} / {result.num_steps}")
        self.run_panel.show_done(f"reopened: {text}" if banner else f"done: {text}")

    def show_still(self, picture: Any, banner: str) -> None:
        """Show a saved picture whose run has no trajectory (older entries, a PNG alone)."""
        from .run.trajectory import StillFrames

        self._result = None
        self.guidance.reset()
        self._show_frames(StillFrames(picture), banner, None)
        self.plots.set_notes(prob="not saved", norm="not saved")
        self.run_panel.show_done("final image only")

    def _show_frames(self, frames: Any, banner: str, request: Any) -> None:
        self.views.set_points_mode(frames.is_points)
        self.views.set_colors(class_colors(request))
        self.views.begin(frames, frames.num_steps)
        self.views.finish(len(frames))
        self.views.set_banner(banner)
        prob, norm, noise = frames.curves()
        self.plots.clear_curves()
        self.plots.set_steps(frames.num_steps)
        self.plots.set_curves(prob, norm, noise)
        self.plots.set_cursor(self.views.shown_index)
        guided = request is not None and request.guidance.kind != "none"
        self.plots.set_notes(prob="" if np.isfinite(prob).any() else "not recorded",
                             norm="" if guided else "no guidance")

    def start_run(self) -> bool:
        """Start sampling with the current settings; False (and a message) when that is impossible."""
        if self.is_running() or self.loader.busy:
            return False
        if self.bundle is None:
            self.show_error("No model is loaded yet.")
            return False
        try:
            request = self.session.request()
            # steps the model cannot take (typed, or from a reopened run): said here, before a worker starts
            self.bundle.sampling_schedule(request.steps, request.sampler)
        except ValueError as exc:
            self.show_error(str(exc))
            return False
        from .run.worker import SamplingWorker

        options = self.session.settings
        self.worker = worker = SamplingWorker(request, self.bundle, exact_curves=options.exact_curves,
                                              paint_interval=FRAME_INTERVAL_MS / 1000, maps=options.maps,
                                              twin=options.twin, exact_decode=options.exact_decode,
                                              pace=options.watch_rate if options.watch else None)
        worker.frame_ready.connect(self._on_frame_ready)
        worker.held.connect(self._on_held)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self.views.set_colors(class_colors(request))
        self.views.set_banner("")
        self.views.begin(worker.trajectory, 0)
        self.first_frame_at = None
        self.started_at = time.perf_counter()
        self.statusBar().showMessage(f"Sampling {request.batch} × {self.bundle.name} ({request.sampler.upper()}, "
                                     f"{request.steps} steps) on {self.bundle.device}…")
        self._running = True
        self._update_enabled()
        self._starting.add(functools.partial(self.guidance.begin, worker.recorder, self.bundle, live=True,
                                             beside=worker.submit),
                           functools.partial(self._clear_plots, request), self._launch_worker)
        return True

    def _clear_plots(self, request: Any) -> None:
        self.plots.clear_curves()
        self.plots.set_notes(prob="" if self.bundle.classifier is not None else "no classifier",
                             norm="" if request.guidance.kind != "none" else "no guidance")

    def _span_empty_plots(self) -> None:
        """While the plots show no run (a model was just loaded), their step axes span the run the settings
        describe, so that Start finds them laid out (three axes drawn anew held the first frame 14–19 ms)."""
        if self._running or self.bundle is None or not self.plots.empty:
            return
        try:
            request = self.session.request()
            steps = self.bundle.sampling_schedule(request.steps, request.sampler).num_steps
        except ValueError:  # settings the model cannot take: Start will say so
            return
        self.plots.set_steps(steps)

    def _launch_worker(self) -> None:
        if self.worker is not None and self._running and not self.worker.started:
            self.worker.start()

    def stop_run(self) -> None:
        """Ask the worker to stop after the current step; `run_finished` follows with completed=False."""
        if self.is_running():
            self.worker.stop()
            self.statusBar().showMessage("Stopping…")

    def pause_run(self, hold: bool = True) -> None:
        """Hold the running sampler between two steps (hold) or let it run on to the end."""
        if self.is_running():
            if hold:
                self.worker.pause()
            else:
                self.worker.resume()
                self.run_panel.show_held(None)

    def step_run(self) -> None:
        """Let a run take one more step, then hold (pauses a run that is going)."""
        if self.is_running():
            self.worker.step()

    def run_to(self, index: int) -> None:
        """Let a run go on until step `index`, then hold."""
        if self.is_running():
            self.worker.run_to(index)

    def show_help(self) -> Any:
        """Help › What am I looking at?: the illustrated page, pictured from the views as they are now."""
        from .views.help_page import HelpPage

        self.help_page = HelpPage(self)
        self.help_page.show()
        return self.help_page

    def _on_held(self, index: int) -> None:
        if self.sender() is not self.worker:
            return
        self._paint_latest()  # the held step and every curve up to it, not a throttled earlier state
        self.plots.set_curves(*self.worker.trajectory.curves())
        self.plots.set_cursor(self.views.shown_index)
        self.guidance.refresh()
        self.run_panel.show_held(index)
        self.statusBar().showMessage(f"Held after step {index}: Step, Run to a step, or Resume.")

    def _on_frame_ready(self) -> None:
        """A new frame is waiting: paint it now, or once FRAME_INTERVAL_MS has passed since the last."""
        if self.worker is None or self.sender() is not self.worker or self._frame_timer.isActive() or self._frames:
            return
        wait_ms = FRAME_INTERVAL_MS - 1000 * (time.perf_counter() - self._last_paint)
        if wait_ms > 1:
            self._frame_timer.start(int(wait_ms))
        else:
            self._take_frame_in_a_turn()

    def _take_frame_in_a_turn(self) -> None:
        if not self._frames:
            self._frames.add(self._paint_latest)

    def _paint_latest(self) -> None:
        worker = self.worker
        frame = worker.take_frame() if worker is not None else None
        if frame is None:
            return
        self._last_paint = time.perf_counter()
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
            self.plots.set_steps(frame.num_steps)
            self.run_panel.set_steps(frame.num_steps)
        self.views.new_frame(frame)
        if self._last_paint - self._last_plot >= PLOT_INTERVAL_S and not self._refreshes:
            self._last_plot = self._last_paint
            # The curves, the guidance plots and the progress are redrawn in turns of their own, after the
            # frame is painted: done together with it they stalled the GUI thread for tens of milliseconds.
            traj = self.worker.trajectory
            parts = [*self._curve_parts(traj), *self.guidance.refresh_parts()]
            # The progress first: last, behind six parts and their repaints, it told a step 0.2-0.3 s older than
            # the panes' (step 13 of 40 under a pane at step 31).
            self._refreshes.add(lambda: self._refresh_progress(frame),
                                *while_showing(lambda: self._running and self.views.source is traj, parts))
        self.frame_shown.emit(frame.index)

    def _curve_parts(self, traj: Any) -> list[Callable[[], None]]:
        """Redraws of each per-step plot's curve and cursor from `traj`, to run in turns of their own: the three
        and their repaint at once held the GUI thread 5–11 ms."""
        def part(key: str) -> None:
            self.plots.set_curve(key, traj.curve(key))
            self.plots.set_cursor(self.views.shown_index, key)

        return [functools.partial(part, key) for key in CURVE_KEYS]

    def _refresh_progress(self, frame: Any) -> None:
        if self.worker is not None and self._running:
            self.run_panel.show_progress(frame.index, frame.num_steps, frame.elapsed)
            if self.worker.held_at is not None:
                self.run_panel.show_held(self.worker.held_at)

    def _on_step_shown(self, index: int) -> None:
        if not self._running:  # while running, the cursor moves with the (throttled) curves
            self.plots.set_cursor(index)

    def _on_finished(self, result: Any) -> None:
        """The run ended: its last frame, progress and buttons now; its guidance views and curves each in a turn
        of their own after that repaint (together they held the GUI thread ~30 ms at the end of every run);
        `run_finished` once they are drawn. With a later run, a reopened one or another model on screen by then
        they are not drawn, but the signal always comes (the library records the run on it)."""
        if self.sender() is not self.worker:
            return
        self._running = False
        self._frame_timer.stop()
        self._frames.cancel()
        self._refreshes.cancel()
        self._result = result
        traj = self.worker.trajectory
        self.views.finish(len(traj))
        steps = len(traj) - 1
        self.run_panel.show_progress(steps, traj.num_steps, result.seconds)
        if result.completed:
            text = f"done: {steps} steps in {result.seconds:.1f} s"
        else:
            text = f"stopped at step {steps} / {traj.num_steps}"
        self.run_panel.show_done(text)
        self.statusBar().showMessage(f"{self.bundle.name}: {text}")
        self._update_enabled()

        def guidance_done() -> None:
            if not self._running:  # (a run started since keeps its live pacing)
                self.guidance.set_live(False)

        parts = [*self.guidance.refresh_parts(), *self._curve_parts(traj)]
        self._finishing.add(guidance_done, *while_showing(lambda: self.views.source is traj, parts),
                            lambda: self.run_finished.emit(result))

    def _on_failed(self, message: str) -> None:
        if self.sender() is not self.worker:
            return
        self._running = False
        if self.first_frame_at is None:  # the panes still show what was there before Start
            self.views.clear()
        self.guidance.set_live(False)
        self.run_panel.show_done("failed")
        self._update_enabled()
        self.show_error(message)

    # --- state and errors --------------------------------------------------------------------------

    def _update_enabled(self) -> None:
        running = self.is_running()
        busy = self.loader.busy
        reason = self.session.availability()["start"]
        if busy:
            reason = "Wait until the model has loaded."
        self.run_panel.set_running(running, reason)
        self.start_action.setEnabled(not running and reason is None)
        self.stop_action.setEnabled(running)
        self.pause_action.setEnabled(running)
        self.step_action.setEnabled(running)
        self.model_panel.set_busy(running or busy)
        self.open_action.setEnabled(not (running or busy))

    def show_error(self, message: str) -> None:
        """A readable, non-blocking message box plus the status line; the app stays usable."""
        self.last_error = message
        self.statusBar().showMessage(message.splitlines()[0] if message else "Error")
        if self._message_box is not None:
            self._message_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, "Guidance Studio", message, QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.open()
        self._message_box = box
        self.error_shown.emit(message)
