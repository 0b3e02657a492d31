"""Shared fixtures for the app tests: offscreen Qt, a throw-away QSettings file, the real window."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from core import ModelBundle, ModelConfig  # noqa: E402

LOAD_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 60_000


class ScaledIdentity(nn.Module):
    """ε(x, t, y) = 0.5·x (optionally after a sleep, to make runs long enough to stop or close)."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.5))
        self.delay = delay

    def forward(self, x, t, y=None):
        if self.delay:
            time.sleep(self.delay)
        return self.weight * x


def tiny_bundle(data_shape=(3, 8, 8), delay: float = 0.0, num_classes: int = 0, name: str = "tiny") -> ModelBundle:
    """A random-free toy bundle: no classifier, no null label; images when data_shape has 3 dims."""
    names = tuple(f"kind {k}" for k in range(num_classes))
    config = ModelConfig(architecture="test-identity", data_shape=data_shape, num_classes=num_classes,
                         class_names=names, clip="clip" if len(data_shape) == 3 else "none")
    return ModelBundle(name, config, ScaledIdentity(delay))


@pytest.fixture(autouse=True)
def private_data_folder(tmp_path, monkeypatch):
    """Keep the run library of every app test out of the user's real data folder."""
    monkeypatch.setenv("GUIDANCE_STUDIO_DATA", str(tmp_path / "data"))


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    """The real main window, shown, with the engine and toy-gmm loaded."""
    from desktop_app.main_window import MainWindow

    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_loaded, timeout=LOAD_TIMEOUT_MS):
        win.begin_startup()
    yield win
    if win.worker is not None:
        win.worker.stop()
        win.worker.wait(5)
