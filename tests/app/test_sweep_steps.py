"""Step-locked sweeps: one scrubber moves every cell to the same step (x_t or x̂0), aligned by noise level
when the cells differ in length; it plays as one animation, exports one GIF/APNG, and the sweep is
saved in the library as a group that reopens as the same grid."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from core import Guidance, SamplingRequest, load_model
from core.recording import Recorder
from desktop_app.compare.steps import StepLock, aligned_steps
from desktop_app.compare.sweep_window import CELL_SIZE, SweepWindow
from desktop_app.qtpix import to_pixmap

BASE = SamplingRequest(model="toy-gmm", steps="10", guidance=Guidance(kind="cfg", weight=1.0), label=2, batch=200)


@pytest.fixture(scope="module")
def gmm():
    return load_model("toy-gmm", device="cpu")


@pytest.fixture
def sweep(qtbot, gmm):
    w = SweepWindow(lambda: BASE, lambda: gmm)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()


def run(sweep, qtbot, values: str, seeds: str = "0", parameter: str = "weight") -> None:
    sweep.parameter.setCurrentIndex(sweep.parameter.findData(parameter))
    sweep.values.setText(values)
    sweep.seeds.setText(seeds)
    with qtbot.waitSignal(sweep.sweep_finished, timeout=60_000):
        assert sweep.start()


def shown(sweep, row: int, col: int) -> QImage:
    return sweep.cell_label(row, col).pixmap().toImage()


def expected(sweep, row: int, col: int, position: int, view: str) -> QImage:
    i = sweep._order.index((row, col))
    size = sweep.cell_size - 2
    picture = sweep.lock.picture(i, position, view, size=size)
    return to_pixmap(picture).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.FastTransformation).toImage()


def test_one_scrubber_moves_every_cell_to_the_same_step(sweep, qtbot):
    run(sweep, qtbot, "0, 4", seeds="0, 1")
    player = sweep.player
    assert player.count() == 11 and player.index() == 10 and player.slider.isEnabled()
    player.set_index(3)
    for key in sweep.cells:
        assert shown(sweep, *key) == expected(sweep, *key, 3, "xt")
    assert "step 3 / 10" in player.step_label.text() and "noise" in player.step_label.text()
    player.set_index(0)  # the same seed, the same x_T: the cells of a row start identical
    assert shown(sweep, 0, 0) == shown(sweep, 0, 1) and shown(sweep, 0, 0) != shown(sweep, 1, 0)
    player.set_index(10)  # … and end apart (w = 0 against w = 4)
    assert shown(sweep, 0, 0) != shown(sweep, 0, 1)
    sweep.view.setCurrentIndex(sweep.view.findData("x0"))
    player.set_index(6)
    for key in sweep.cells:
        assert shown(sweep, *key) == expected(sweep, *key, 6, "x0")
    positions = []
    sweep.position_shown.connect(positions.append)
    player.set_index(0)
    player.play_button.setChecked(True)
    for _ in range(30):
        player.advance(0.25)
    assert positions[0] == 0 and positions[-1] == 10 and positions == sorted(positions) and not player.playing


def test_cells_of_different_lengths_are_aligned_by_noise_level(gmm):
    def record(steps: str):
        request = BASE.replace(steps=steps)
        recorder = Recorder.for_bundle(request, gmm)
        from core import sample

        for step in sample(request, gmm):
            recorder.add(step)
        return recorder.result(True)

    short, long = record("5"), record("20")
    lock = StepLock([short, long])
    assert lock.reference == 1 and len(lock) == 21
    steps = aligned_steps(long, short)
    noise_long, noise_short = np.array(long.track("noise_level")), np.array(short.track("noise_level"))
    for k in range(21):  # the nearest noise level, and so monotonic
        assert abs(noise_short[steps[k]] - noise_long[k]) == np.abs(noise_short - noise_long[k]).min()
    assert steps[0] == 0 and steps[-1] == 5 and (np.diff(steps) >= 0).all()
    assert [lock.step(1, k) for k in range(21)] == list(range(21))


def test_the_sweep_exports_one_animation(sweep, qtbot, tmp_path):
    run(sweep, qtbot, "0, 3")
    gif = sweep.export_animation(tmp_path / "sweep.gif")
    with Image.open(gif) as img:
        assert img.n_frames == 11 and img.info["loop"] == 0
        first = np.asarray(img.convert("RGB"))
        img.seek(10)
        last = np.asarray(img.convert("RGB"))
    assert first.shape == last.shape and not np.array_equal(first, last)
    apng = sweep.export_animation(tmp_path / "sweep.png")
    with Image.open(apng) as img:
        assert img.format == "PNG" and getattr(img, "n_frames", 1) == 11


def test_a_finished_sweep_is_in_the_library_and_reopens_as_its_grid(qtbot, window):
    from .test_library_window import RUN_TIMEOUT_MS

    window.session.update(steps="8", batch_points=100, guidance="cfg", weight=1.0, class_index=3)
    sweep = window.results.sweep
    sweep.values.setText("0, 2, 5")
    sweep.seeds.setText("0-1")
    with qtbot.waitSignal(window.results.sweep_recorded, timeout=RUN_TIMEOUT_MS) as recorded:
        with qtbot.waitSignal(sweep.sweep_finished, timeout=RUN_TIMEOUT_MS):
            assert sweep.start()
    group = recorded.args[0]
    gallery = window.results.gallery
    assert gallery.group_ids() == [group.id] and gallery.entry_ids() == []  # one item for the sweep
    assert gallery.count.text() == "0 runs, 1 sweep" and len(group.cells) == 6
    sweep.player.set_index(4)
    before = {key: shown(sweep, *key) for key in sweep.cells}
    sweep.values.setText("1")
    with qtbot.waitSignal(sweep.sweep_finished, timeout=RUN_TIMEOUT_MS):  # another sweep replaces the grid
        assert sweep.start()
    assert len(sweep.cells) == 2
    gallery.set_model_filter(None)
    gallery.select_groups([group.id])
    with qtbot.waitSignal(window.results.sweep_reopened, timeout=RUN_TIMEOUT_MS) as reopened:
        qtbot.mouseClick(gallery.reopen_button, Qt.MouseButton.LeftButton)
    assert reopened.args[0].startswith(f"Reopened sweep #{group.id} from ") and sweep.banner.text() == reopened.args[0]
    assert sorted(sweep.cells) == sorted(before) and sweep.player.count() == 9
    sweep.player.set_index(4)
    for key, image in before.items():
        assert shown(sweep, *key) == image
    gallery.select_groups([group.id])
    assert gallery.delete_selected(confirm=False) == 1
    assert gallery.group_ids() == [] and window.results.library.list(group_id=group.id) == []


def test_the_cells_grow_with_the_window_and_keep_their_step(sweep, qtbot):
    run(sweep, qtbot, "0, 4", seeds="0")
    sweep.show()
    sweep.resize(700, 600)
    qtbot.wait(50)
    small = sweep.cell_size
    sweep.player.set_index(4)
    sweep.resize(1400, 1000)
    qtbot.wait(50)
    assert sweep.cell_size > small >= CELL_SIZE  # the room the window gained goes to the pictures
    assert sweep.cell_label(0, 0).width() == sweep.cell_size and sweep.cell_label(0, 1).width() == sweep.cell_size
    for key in sweep.cells:  # drawn again at the new size, still at the step chosen
        assert shown(sweep, *key) == expected(sweep, *key, 4, "xt")
    assert shown(sweep, 0, 0).width() == sweep.cell_size - 2
