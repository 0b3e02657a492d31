"""Compiling the current model's network in the background (desktop_app/compiling.py), in the real window.

The compile command is replaced by a short Python script that does what `python -m core compile` leaves
behind (the session's compiled library, built once by tests/conftest.py, copied to the model's library
path), so that what is tested is the app's side: starting the process, attaching the library between runs,
runs that use it, the status line, a failed compile, and a model switch that ends the process."""
from __future__ import annotations

import sys

import pytest

from core import compiled
from core.checkpoints import save_bundle

from ..compiled_fixtures import small_unet_bundle
from .conftest import LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS

# What a successful `python -m core compile --background --model KEY` leaves: the model's compiled library.
FAKE_COMPILE = """
import shutil, sys
from pathlib import Path
from core import compiled, load_model
source, key = Path(sys.argv[1]), sys.argv[-1]
path = compiled.library_path(load_model(key, "cpu"))
path.parent.mkdir(parents=True, exist_ok=True)
shutil.copyfile(compiled.checksum_path(source), compiled.checksum_path(path))
shutil.copyfile(source, path)
print("compiled")
"""


@pytest.fixture
def compiling(monkeypatch, tmp_path):
    monkeypatch.setenv("GUIDANCE_STUDIO_COMPILE", "1")
    return save_bundle(small_unet_bundle("my-unet"), tmp_path / "my-unet.safetensors")


def open_model(qtbot, window, path):
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.open_checkpoint(str(path))
    return window.bundle


def test_a_model_is_compiled_in_the_background_and_its_runs_take_the_compiled_forward(
        qtbot, window, compiling, compiled_library):
    compiler = window.loader.compiler
    compiler.command = [sys.executable, "-c", FAKE_COMPILE, str(compiled_library)]
    statuses = []
    compiler.status.connect(statuses.append)
    with qtbot.waitSignal(compiler.attached, timeout=LOAD_TIMEOUT_MS) as attached:
        bundle = open_model(qtbot, window, compiling)
        assert bundle.compiled is None and compiler.process is not None
        assert "Compiling my-unet's network for this CPU in the background" in statuses[-1]
    assert attached.args == ["my-unet"] and compiler.process is None
    assert bundle.compiled is not None and bundle.compiled.path == compiled.library_path(bundle)
    assert "compiled for this CPU" in window.statusBar().currentMessage()

    calls = []
    runner = bundle.compiled.runner
    bundle.compiled.runner = lambda *args: calls.append(len(args[0])) or runner(*args)
    window.session.update(steps="ddim8", batch_images=4, guidance="cfg", weight=2.0, class_index=1)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.run_panel.start_button.click()
    assert finished.args[0].completed and sum(calls) >= 8 * 8  # every step: both CFG passes of 4 images

    # Opened again (its library is on disk now): attached while loading, no process.
    window.loader.load("toy-gmm")
    qtbot.waitUntil(lambda: window.bundle.name == "toy-gmm", timeout=LOAD_TIMEOUT_MS)
    again = open_model(qtbot, window, compiling)
    assert again.compiled is not None and compiler.process is None
    assert "with its network compiled for this CPU" in window.statusBar().currentMessage()


def test_a_failed_compile_is_said_once_and_the_model_runs_as_before(qtbot, window, compiling):
    compiler = window.loader.compiler
    compiler.command = [sys.executable, "-c",
                        "import sys; print('error: Could not compile my-unet: no C++ compiler'); sys.exit(2)"]
    statuses = []
    compiler.status.connect(statuses.append)
    bundle = open_model(qtbot, window, compiling)
    qtbot.waitUntil(lambda: compiler.process is None, timeout=LOAD_TIMEOUT_MS)
    assert statuses[-1] == "my-unet runs as before: Could not compile my-unet: no C++ compiler"
    assert bundle.compiled is None


def test_switching_models_ends_the_compile_in_progress(qtbot, window, compiling):
    compiler = window.loader.compiler
    compiler.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    open_model(qtbot, window, compiling)
    process = compiler.process
    assert process is not None
    qtbot.waitUntil(lambda: process.processId() > 0, timeout=LOAD_TIMEOUT_MS)
    pid = process.processId()
    window.loader.load("toy-gmm")
    qtbot.waitUntil(lambda: window.bundle.name == "toy-gmm", timeout=LOAD_TIMEOUT_MS)
    assert compiler.process is None
    qtbot.waitUntil(lambda: not _alive(pid), timeout=5000)


def test_nothing_is_compiled_when_switched_off(qtbot, window, compiling, monkeypatch):
    monkeypatch.setenv("GUIDANCE_STUDIO_COMPILE", "0")
    bundle = open_model(qtbot, window, compiling)
    assert compiled.wanted(bundle) and window.loader.compiler.process is None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


