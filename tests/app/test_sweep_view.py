"""The sweep window on toy-gmm: cells fill as runs finish, stop, errors, saving the legend grid."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from core import Guidance, SamplingRequest, load_model  # noqa: E402
from core.pngmeta import read_settings  # noqa: E402
from desktop_app.compare.sweep_window import SweepWindow  # noqa: E402

BASE = SamplingRequest(model="toy-gmm", steps="8", guidance=Guidance(kind="cfg", weight=1.0), label=5, batch=64)


@pytest.fixture(scope="module")
def gmm():
    return load_model("toy-gmm", device="cpu")


@pytest.fixture
def window(qtbot, gmm):
    state = {"request": BASE}
    w = SweepWindow(lambda: state["request"], lambda: gmm)
    w.state = state
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()


def test_three_values_fill_three_labelled_cells_with_shared_noise(window, qtbot, tmp_path):
    window.values.setText("0, 2, 6")
    with qtbot.waitSignal(window.sweep_finished, timeout=30000) as done:
        window.run_button.click()
    assert done.args == [True]
    assert sorted(window.cells) == [(0, 0), (0, 1), (0, 2)]
    heads = [window.grid.itemAtPosition(0, c + 1).widget().text() for c in range(3)]
    assert heads == ["<b>w = 0</b>", "<b>w = 2</b>", "<b>w = 6</b>"]
    assert all(not window.cell_label(0, c).pixmap().isNull() for c in range(3))
    first = window.cells[0, 0].initial
    assert all(np.array_equal(window.cells[0, c].initial, first) for c in (1, 2))
    assert window.save_button.isEnabled() and window.run_button.isEnabled()
    path = window.save_grid(tmp_path / "grid.png")
    with Image.open(path) as img:
        assert img.width > 3 * 128
    model, request = read_settings(path)
    assert model == "toy-gmm" and request == BASE


def test_two_seeds_make_two_rows(window, qtbot):
    window.parameter.setCurrentIndex(window.parameter.findData("steps"))
    assert window.values.text() == "10, 25, 50, 100"
    window.values.setText("4, 6")
    window.seeds.setText("3-4")
    with qtbot.waitSignal(window.sweep_finished, timeout=30000):
        assert window.start()
    assert sorted(window.cells) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert window.grid.itemAtPosition(2, 0).widget().text() == "<b>seed 4</b>"
    assert window.cells[1, 1].result.request.seed == 4 and window.cells[1, 1].result.request.steps == "6"


def test_stop_ends_the_sweep_early_and_marks_the_rest(window, qtbot):
    window.values.setText("0, 1, 2, 3, 4, 5")
    window.seeds.setText("0-3")
    window.state["request"] = BASE.replace(steps="200", batch=512)
    with qtbot.waitSignal(window.sweep_finished, timeout=30000) as done:
        window.start()
        window.stop_button.click()
    assert done.args == [False]
    assert len(window.cells) < 24
    assert window.cell_label(3, 5).text() == "not run"
    assert "stopped" in window.status.text()


def test_bad_input_explains_and_runs_nothing(window):
    window.parameter.setCurrentIndex(window.parameter.findData("scale"))
    assert not window.start()
    assert "needs classifier guidance" in window.status.text()
    window.parameter.setCurrentIndex(window.parameter.findData("weight"))
    window.values.setText("one, two")
    assert not window.start()
    assert "must be numbers" in window.status.text()
    window.state["request"] = None
    window.values.setText("1")
    assert not window.start() and "Load a model" in window.status.text()
    assert window.runner is None
    with pytest.raises(ValueError, match="nothing to save"):
        window.grid_picture()


@pytest.mark.parametrize("seeds, values, message", [
    ("0-20000", "0, 1, 3, 6", "20001 seeds are more than a sweep can hold (400 runs at most)."),
    ("0-2000000000", "0", "2000000001 seeds are more than a sweep can hold (400 runs at most)."),
    ("0-200000000000", "0", "The seed must be from 0 to 2147483647, not 200000000000."),
    ("2147483648", "0", "The seed must be from 0 to 2147483647, not 2147483648."),  # saved runs no reopen took
    ("1-" + "9" * 5000, "0", "The seed must be from 0 to 2147483647, not a 5000-digit number."),
    ("0-100", "0, 1, 3, 6",
     "101 seeds × 4 values make 404 runs; a sweep holds at most 400: use fewer seeds or values."),
    ("0", " ".join(str(v) for v in range(401)), "401 values are more than a sweep can hold (400 runs at most)."),
])
def test_a_grid_beyond_the_limit_is_refused_at_once(window, seeds, values, message):
    """seeds 0-20000 froze the window 11 s and took 1.9 GB; 0-200000 aborted the process."""
    window.seeds.setText(seeds)
    window.values.setText(values)
    assert not window.start()
    assert window.status.text() == f"Cannot sweep: {message}"
    assert window.runner is None and window.grid.count() == 0
    assert "at most 400 runs" in window.seeds.toolTip()


def test_a_grid_at_the_limit_is_accepted(window):
    window.seeds.setText("0-99")
    window.values.setText("0, 1, 3, 6")
    assert window.build_spec().shape == (100, 4)
