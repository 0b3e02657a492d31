"""Start-up: the window appears before torch is imported; `main` routes --self-test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SHOW_WINDOW = """
import sys
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
window = MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
window.show()
app.processEvents()
print("visible" if window.isVisible() else "hidden", "torch" in sys.modules, window.statusBar().currentMessage())
window.close()
app.processEvents()
"""


def test_window_is_shown_before_torch_is_imported(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GUIDANCE_STUDIO_DATA=str(tmp_path / "data"),
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SHOW_WINDOW, str(tmp_path / "s.ini")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["visible", "False"]
    assert "Starting" in out.stdout


def test_main_hands_self_test_to_selftest(monkeypatch):
    import desktop_app.selftest as selftest
    from desktop_app.__main__ import main

    seen = []
    monkeypatch.setattr(selftest, "run", lambda argv: seen.append(argv) or 7)
    assert main(["--self-test", "--quick"]) == 7
    assert seen == [["--self-test", "--quick"]]
