"""What keeps the GUI thread free while sampling, checked without timing: the long-lived objects are out of
the garbage collector's full collections once a model is loaded."""
from __future__ import annotations

import gc

from .conftest import LOAD_TIMEOUT_MS


def test_a_loaded_model_leaves_full_collections_only_the_newer_objects(qtbot, window):
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the engine's, Qt's and toy-gmm's objects, after the first load
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.loader.load("toy-scurve")
    assert gc.get_freeze_count() > 10_000 and len(gc.get_objects(generation=2)) < frozen
