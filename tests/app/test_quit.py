"""Quitting: every background thread ends with the window (the saver's idle thread used to live on, so the
app waited 3 s and left through os._exit), a run stopped by closing is saved as stopped, and the process
exits through the interpreter's normal teardown. Times are measured by bench/quit_time.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from .conftest import RUN_TIMEOUT_MS, tiny_bundle

ROOT = Path(__file__).resolve().parents[2]


def helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("serial-task")]


def test_closing_ends_the_saving_thread(qtbot, window):
    window.session.update(steps="4", batch_points=50)
    with qtbot.waitSignal(window.results.run_recorded, timeout=RUN_TIMEOUT_MS):
        window.start_run()
    assert helper_threads()  # the saver's pool thread, idle now
    window.close()
    for thread in helper_threads():
        thread.join(10)
    assert not helper_threads()


def test_a_run_stopped_by_closing_is_saved_as_stopped(qtbot, window):
    window.set_bundle(tiny_bundle((2,), delay=0.02, name="slow"))
    window.session.update(steps="1000", batch_points=10)
    with qtbot.waitSignal(window.frame_shown, timeout=RUN_TIMEOUT_MS):
        window.start_run()
    window.close()
    entries = window.results.library.list()
    assert [(e.model, e.completed) for e in entries] == [("slow", False)]
    assert all(path.is_file() for path in entries[0].files)


QUIT_SCRIPT = textwrap.dedent("""
    import atexit, sys
    from PySide6.QtCore import QTimer
    import desktop_app.__main__ as entry
    import desktop_app.main_window as main_window

    class Closing(main_window.MainWindow):
        def begin_startup(self):
            super().begin_startup()
            self.model_loaded.connect(lambda _name: self.start_run())
            self.results.run_recorded.connect(lambda _entry: QTimer.singleShot(0, self.close))

    main_window.MainWindow = Closing
    atexit.register(lambda: print("normal teardown", flush=True))
    sys.exit(entry.main([]))
""")


def test_the_app_ends_through_the_normal_teardown(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GUIDANCE_STUDIO_DATA=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", QUIT_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "normal teardown"  # os._exit skips atexit handlers


def test_closing_as_a_run_ends_still_saves_it(qtbot, window):
    """The end of a run is drawn over a few event-loop turns before `run_finished`; a window closed in between
    records the run all the same."""
    window.session.update(steps="5", batch_points=20)
    ended = []
    window.start_run()
    window.worker.finished.connect(lambda result: (ended.append(result), window.close()))  # after the window's slot
    qtbot.waitUntil(lambda: bool(ended), timeout=RUN_TIMEOUT_MS)
    entries = window.results.library.list()
    assert [(e.model, e.completed) for e in entries] == [(window.bundle.name, True)]


LOADING_SCRIPT = textwrap.dedent("""
    import atexit, sys, time
    import torch
    from PySide6.QtCore import QTimer
    import desktop_app.__main__ as entry
    import desktop_app.main_window as main_window
    import desktop_app.models as models

    real_load = models._load_builtin

    def slow_load(*args):
        end = time.monotonic() + 4.0
        a = torch.randn(400, 400)
        while time.monotonic() < end:  # inside torch, as a big model's load is
            a = torch.tanh(a @ a)
        print("load finished", flush=True)
        return real_load(*args)

    class Closing(main_window.MainWindow):
        def begin_startup(self):
            super().begin_startup()
            self.model_loaded.connect(self.load_then_close)

        def load_then_close(self, _name):
            self.model_loaded.disconnect(self.load_then_close)
            models._load_builtin = slow_load
            self.loader.load("toy-scurve")
            QTimer.singleShot(200, self.close)

    main_window.MainWindow = Closing
    atexit.register(lambda: print("normal teardown", flush=True))
    sys.exit(entry.main([]))
""")


def test_closing_while_a_model_loads_lets_the_load_end_before_the_process_exits(tmp_path):
    """The window closes at once; the load, inside torch, ends before the interpreter shuts down (on a daemon
    thread it was cut off there, which can abort the process)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GUIDANCE_STUDIO_DATA=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONPATH=str(ROOT), GUIDANCE_STUDIO_COMPILE="0")
    proc = subprocess.run([sys.executable, "-c", LOADING_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["load finished", "normal teardown"]
