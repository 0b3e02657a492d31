"""Reopening shows a run as it was: both panes at any step, the scrubber, the plots, the settings, a
"Reopened run #N" banner that Start replaces; a PNG with its run file likewise, a PNG alone or an older
entry its final image. Uses the `window` fixture (toy-gmm loaded)."""
from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from .conftest import LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS, tiny_bundle


def run_and_record(window, qtbot, **settings):
    window.session.update(**settings)
    with qtbot.waitSignal(window.results.run_recorded, timeout=RUN_TIMEOUT_MS) as recorded:
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
            assert window.start_run()
    return done.args[0], recorded.args[0]


def grab(qtbot, widget) -> np.ndarray:
    """What `widget` shows now, as (H, W, 3) uint8."""
    qtbot.wait(10)
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : 3 * image.width()].reshape(image.height(), image.width(), 3).copy()


def reopen_selected(window, qtbot, entry_id: int) -> str:
    gallery = window.results.gallery
    gallery.select_ids([entry_id])
    with qtbot.waitSignal(window.results.run_reopened, timeout=LOAD_TIMEOUT_MS) as shown:
        qtbot.mouseClick(gallery.reopen_button, Qt.MouseButton.LeftButton)
    return shown.args[0]


def test_a_reopened_2d_run_shows_both_panes_as_they_were_at_any_step(window, qtbot):
    views = window.views
    views.data_box.setChecked(False)  # the training data is drawn when a model loads; compare the runs alone
    for box in window.guidance.panel.toggles.values():
        box.setChecked(False)  # and the arrow overlays, computed on a helper thread
    result, entry = run_and_record(window, qtbot, steps="30", batch_points=300, guidance="cfg", weight=2.0,
                                   class_index=2, seed=5)
    views.slider.setValue(12)
    before = [grab(qtbot, pane) for pane in views.point_panes]
    curves_before = [window.plots.curve_data(key)[1] for key in ("prob", "norm", "noise")]
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.loader.load("toy-scurve")  # another model: the run leaves the screen
    assert views.source is None
    banner = reopen_selected(window, qtbot, entry.id)
    assert window.bundle.name == "toy-gmm" and window.session.request() == result.request
    assert banner.startswith(f"Reopened run #{entry.id} from ") and views.banner.text() == banner
    assert views.slider.maximum() == 30 and views.slider.value() == 30 and views.slider.isEnabled()
    views.slider.setValue(12)
    after = [grab(qtbot, pane) for pane in views.point_panes]
    for a, b in zip(before, after):
        assert (a != 255).any(axis=-1).sum() > 100  # the points are drawn
        np.testing.assert_array_equal(a, b)
    for key, values in zip(("prob", "norm", "noise"), curves_before):
        np.testing.assert_allclose(window.plots.curve_data(key)[1], values, rtol=1e-6)
    assert window.plots.cursors["noise"].value() == 12
    assert window.current_result().request == result.request
    assert window.run_panel.progress.format().startswith("reopened: 30 steps")
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()  # a new run replaces the reopened one
        assert views.banner.text() == ""


def test_a_reopened_image_run_shows_the_same_pixels(window, qtbot):
    window.set_bundle(tiny_bundle((3, 8, 8)))
    result, entry = run_and_record(window, qtbot, steps="12", batch_images=4, seed=3)
    views = window.views
    views.slider.setValue(5)
    live = [pane.image.copy() for pane in views.image_panes]
    live_pixels = [grab(qtbot, pane) for pane in views.image_panes]
    views.slider.setValue(12)
    window.session.update(seed=77, steps="50")
    reopen_selected(window, qtbot, entry.id)
    assert window.session.request() == result.request
    views.slider.setValue(5)
    for pane, image, pixels in zip(views.image_panes, live, live_pixels):
        np.testing.assert_array_equal(pane.image, image)
        np.testing.assert_array_equal(grab(qtbot, pane), pixels)
    views.slider.setValue(0)
    assert views.image_panes[1].image is None  # no x̂0 before the first update


def test_a_png_opens_with_its_run_file_and_alone_shows_its_final_image(window, qtbot, tmp_path):
    result, _ = run_and_record(window, qtbot, steps="8", batch_points=100, guidance="cfg", weight=1.0,
                               class_index=4, seed=9)
    saved = window.results.save_to(tmp_path / "mine.png")
    assert saved.run == tmp_path / "mine.run.npz"
    window.session.update(seed=1, steps="40")
    with qtbot.waitSignal(window.results.run_reopened, timeout=LOAD_TIMEOUT_MS) as shown:
        assert window.results.open_file(saved.grid)
    assert shown.args[0].startswith("Opened mine.png (run from ")
    assert window.session.request() == result.request and window.views.slider.maximum() == 8
    np.testing.assert_array_equal(window.views.point_panes[0].points, result.track("xt")[8].astype(np.float32))

    saved.run.unlink()  # the PNG alone: its settings and its picture
    window.session.update(seed=1)
    with qtbot.waitSignal(window.results.run_reopened, timeout=LOAD_TIMEOUT_MS) as shown:
        assert window.results.open_file(saved.grid)
    assert "its run file mine.run.npz is missing: final image only" in shown.args[0]
    assert window.session.request() == result.request
    views = window.views
    assert not views.points_mode and views.slider.maximum() == 0
    np.testing.assert_array_equal(views.image_panes[0].image, np.asarray(Image.open(saved.grid).convert("RGB")))
    assert window.run_panel.progress.format() == "final image only"


def test_an_entry_saved_without_a_trajectory_still_opens(window, qtbot, tmp_path):
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:, :30] = (200, 30, 30)
    path = tmp_path / "old.png"
    Image.fromarray(picture).save(path)
    request = window.session.request().replace(seed=42)
    library = window.results.library
    entry = library.add("toy-gmm", request, files=(path,), thumbnail=None)  # as schema 1 recorded runs
    window.results.gallery.refresh()
    banner = reopen_selected(window, qtbot, entry.id)
    assert banner.startswith(f"Reopened run #{entry.id} from ") and banner.endswith("final image only")
    assert window.session.settings.seed == 42
    np.testing.assert_array_equal(window.views.image_panes[0].image, picture)


def test_a_stopped_run_reopens_at_the_step_it_reached(window, qtbot):
    window.set_bundle(tiny_bundle((2,), delay=0.01, name="slow-points"))
    window.session.update(steps="400", batch_points=10)
    window.frame_shown.connect(lambda index: index >= 3 and window.stop_run())
    with qtbot.waitSignal(window.results.run_recorded, timeout=RUN_TIMEOUT_MS) as recorded:
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
            window.start_run()
    result, entry = done.args[0], recorded.args[0]
    window.frame_shown.disconnect()
    assert not entry.completed
    banner = reopen_selected(window, qtbot, entry.id)
    assert banner.endswith("(stopped early)")
    assert window.views.slider.maximum() == len(result) - 1 < 400
    assert f"stopped at step {len(result) - 1} / 400" in window.run_panel.progress.format()


def test_the_clis_run_file_and_png_open_in_the_app(window, qtbot, tmp_path):
    from core.cli import main

    run_file, picture = tmp_path / "cli.npz", tmp_path / "cli.png"
    common = ["sample", "--guidance", "cfg", "--weight", "1.5", "--label", "6", "--seed", "3", "--steps", "25"]
    assert main([*common, "--num", "300", "--out", str(run_file)]) == 0
    assert main([*common, "--num", "300", "--out", str(picture)]) == 0
    window.session.update(seed=0, steps="50", class_index=0)
    with qtbot.waitSignal(window.results.run_reopened, timeout=LOAD_TIMEOUT_MS) as shown:
        assert window.results.open_file(run_file)
    assert shown.args[0].startswith("Opened cli.npz (run from ")
    s = window.session.settings
    assert (s.seed, s.steps, s.class_index, s.guidance, s.weight, s.batch_points) == (3, "25", 6, "cfg", 1.5, 300)
    views = window.views
    assert views.points_mode and views.slider.maximum() == 25
    views.player.set_index(10)
    assert views.point_panes[0].points.shape == (300, 2) and "step 10 / 25" in views.step_label.text()
    window.session.update(seed=0)
    with qtbot.waitSignal(window.results.run_reopened, timeout=LOAD_TIMEOUT_MS) as shown:
        assert window.results.open_file(picture)  # the CLI's PNG: its settings, its picture
    assert shown.args[0].endswith("final image only") and window.session.settings.seed == 3
    np.testing.assert_array_equal(views.image_panes[0].image, np.asarray(Image.open(picture).convert("RGB")))
