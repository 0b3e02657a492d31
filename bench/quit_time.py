"""How long quitting takes: the real app (offscreen, a private data folder), closed in three situations.

  idle     — after a toy-gmm run (20 steps, 2000 points) has been saved to the library;
  mnist    — mnist-cfg mid-run (DDPM 1000 steps, batch 16): the run stops and is saved as stopped;
  points   — toy-gmm mid-run with 100 000 points (the largest 2-D batch): the same, with a big run file.

For each it prints the seconds from the close request to the window being gone and to the process having
ended (normal interpreter teardown), and whether the stopped run was in the library afterwards.
Targets (issue 9): ≤ 1 s idle, ≤ 2 s mid-run. Usage: python bench/quit_time.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {
    "idle": dict(model="toy-gmm", steps="20", batch_points=2000, sampler="ddim", mid_run=False),
    "mnist": dict(model="mnist-cfg", steps="1000", batch_images=16, sampler="ddpm", mid_run=True),
    "points": dict(model="toy-gmm", steps="1000", batch_points=100_000, sampler="ddpm", mid_run=True),
}


def child(name: str) -> None:
    """Run the app with a window that runs the scenario and closes itself; print monotonic marks."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QTimer

    import desktop_app.__main__ as entry
    import desktop_app.main_window as main_window

    scenario = dict(SCENARIOS[name])
    model, mid_run = scenario.pop("model"), scenario.pop("mid_run")

    class Scripted(main_window.MainWindow):
        def begin_startup(self) -> None:
            super().begin_startup()
            self.model_loaded.connect(self._loaded)

        def _loaded(self, loaded: str) -> None:
            if loaded != model:
                self.loader.load(model)
                return
            self.session.update(**scenario)
            if mid_run:
                self.frame_shown.connect(lambda index: index >= 3 and self._close_soon())
            else:
                self.results.run_recorded.connect(lambda _entry: self._close_soon(0.3))
            self.start_run()

        def _close_soon(self, delay: float = 0.0) -> None:
            if not getattr(self, "_closing", False):
                self._closing = True
                QTimer.singleShot(int(delay * 1000), self._close)

        def _close(self) -> None:
            print(f"CLOSE {time.monotonic():.4f}", flush=True)
            self.close()

        def hideEvent(self, event) -> None:  # noqa: N802 (Qt API)
            if getattr(self, "_closing", False):
                print(f"GONE {time.monotonic():.4f}", flush=True)
            super().hideEvent(event)

    main_window.MainWindow = Scripted
    sys.exit(entry.main([]))


def measure(name: str) -> tuple[float, float, str]:
    folder = Path(tempfile.mkdtemp(prefix="quit-"))
    env = dict(os.environ, GUIDANCE_STUDIO_DATA=str(folder / "data"), XDG_CONFIG_HOME=str(folder / "config"),
               QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, __file__, "--child", name], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    marks = {}
    for line in proc.stdout:
        key, _, value = line.partition(" ")
        if key in ("CLOSE", "GONE"):
            marks[key] = float(value)
    proc.wait()
    ended = time.monotonic()
    db = sqlite3.connect(folder / "data" / "library.sqlite3")
    runs = db.execute("SELECT completed FROM runs WHERE saving IS NULL").fetchall()
    saved = "saved, finished" if runs == [(1,)] else "saved, stopped" if runs == [(0,)] else f"library: {runs}"
    return marks["GONE"] - marks["CLOSE"], ended - marks["CLOSE"], saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name in SCENARIOS:
        for _ in range(args.repeat):
            gone, ended, saved = measure(name)
            print(f"{name:7s} window gone after {gone:.2f} s, process ended after {ended:.2f} s ({saved})")


if __name__ == "__main__":
    main()
