"""Without the optional diffusers/transformers packages the app starts, samples its own models, and a
pipeline folder it is asked to open says how to add them (in the Open-model summary and when opened)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]

WITHOUT = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("diffusers", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
window = MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
window.show()
seen = []
def loaded(name):
    seen.append(name)
    if len(seen) == 1:
        window.open_model_dialog()
        window.open_dialog.set_model(sys.argv[2])
        print("summary:", " ".join(window.open_dialog.summary_text().split()))
        print("open enabled:", window.open_dialog.open_button.isEnabled())
        window.open_dialog.reject()
        window.open_checkpoint(sys.argv[2])
window.model_loaded.connect(loaded)
window.error_shown.connect(lambda message: (print("error:", message), app.quit()))
QTimer.singleShot(60_000, app.quit)
window.begin_startup()
app.exec()
print("loaded:", seen)
print("imported:", [m for m in ("diffusers", "transformers") if m in sys.modules])
"""


def test_the_app_starts_without_diffusers_and_says_how_to_add_it(tmp_path):
    folder = tmp_path / "ddpm-pipe"  # a pixel-space pipeline's layout (configs and a weights header suffice)
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    index = {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
             "scheduler": ["diffusers", "DDPMScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 32}))
    save_file({"w": torch.zeros(3)}, folder / "unet" / "diffusion_pytorch_model.safetensors")
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GUIDANCE_STUDIO_DATA=str(tmp_path / "data"),
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", WITHOUT, str(tmp_path / "s.ini"), str(folder)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert "pipeline DDPMPipeline (pixel-space diffusion) from model_index.json" in lines["summary"]
    assert 'Add them with: pip install "guidance-studio[diffusers]"' in lines["summary"]
    assert lines["open enabled"] == "False"
    assert "needs the optional packages diffusers and transformers" in lines["error"]
    assert 'pip install -e ".[diffusers]"' in lines["error"]
    assert lines["loaded"].startswith("['toy-gmm'") and lines["imported"] == "[]"
