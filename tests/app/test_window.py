"""The real main window, offscreen: runs, stop, scrub, replay, disabled controls, errors, close, persistence."""
from __future__ import annotations

import threading
import time

import numpy as np

from desktop_app.run.trajectory import Frames

from .conftest import LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS, tiny_bundle


def run_to_end(qtbot, window):
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.run_panel.start_button.isEnabled()
        window.run_panel.start_button.click()
    return finished.args[0]


def test_toy_gmm_run_shows_frames_and_ends_on_the_last_step(qtbot, window):
    window.session.update(sampler="ddpm", steps="200", batch_points=500, guidance="cfg", weight=3.0, class_index=2)
    shown = []
    window.frame_shown.connect(shown.append)
    result = run_to_end(qtbot, window)
    assert result.completed and window.current_result() is result
    assert len(shown) >= 1 and shown == sorted(shown)
    assert len(result) == 201 and result.samples.shape == (500, 2)
    last = Frames(result).frame(200)
    views = window.views
    assert views.shown_index == 200 and views.slider.value() == 200 and views.slider.maximum() == 200
    np.testing.assert_array_equal(views.point_panes[0].points, last.xt)
    np.testing.assert_array_equal(views.point_panes[1].points, last.x0)
    steps, noise = window.plots.curve_data("noise")
    np.testing.assert_allclose(noise, result.track("noise_level"), rtol=1e-6)
    _, prob = window.plots.curve_data("prob")
    assert prob[-1] > 0.9  # CFG towards class 2 leaves nearly every point in it
    assert "done: 200 steps" in window.run_panel.progress.format()
    assert not window.run_panel.stop_button.isEnabled() and window.run_panel.start_button.isEnabled()


def test_points_are_coloured_by_target_class(qtbot, window):
    from core.images import PALETTE

    window.session.update(steps="10", batch_points=20, class_index=3)
    run_to_end(qtbot, window)
    groups = window.views.point_panes[0].cloud.group_colors
    assert groups == [tuple(int(v) for v in PALETTE[3])]
    backdrop = window.views.point_panes[0].backdrop.group_colors
    assert len(backdrop) == 8  # the mixture's eight components, each in its class colour


def test_image_model_runs_in_grid_views(qtbot, window):
    window.set_bundle(tiny_bundle((3, 8, 8)))
    assert window.views.stack.currentIndex() == 1 and window.session.caps.name == "tiny"
    window.session.update(steps="15", batch_images=4)
    result = run_to_end(qtbot, window)
    assert result.samples.shape == (4, 3, 8, 8) and len(result) == 16
    last = Frames(result).frame(15)
    shown = window.views.image_panes[0].image
    assert shown.shape == (22, 22, 3)
    np.testing.assert_array_equal(shown, last.xt)
    np.testing.assert_array_equal(window.views.image_panes[1].image, last.x0)
    _, prob = window.plots.curve_data("prob")
    assert len(prob) == 0 and window.plots.notes["prob"] == "no classifier"
    assert "no classifier" in window.plots.plots["prob"].titleLabel.text


def test_stop_mid_run_keeps_a_partial_result(qtbot, window):
    window.set_bundle(tiny_bundle((2,), delay=0.01, name="slow-points"))
    window.session.update(steps="500", batch_points=10)
    window.frame_shown.connect(lambda _: window.run_panel.stop_button.click())
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.start_run()
    result = finished.args[0]
    assert not result.completed and 1 <= len(result) < 501
    assert "stopped at step" in window.run_panel.progress.format()
    assert window.run_panel.start_button.isEnabled()


def test_scrubbing_shows_that_steps_frames(qtbot, window):
    window.session.update(steps="50", batch_points=100)
    result = run_to_end(qtbot, window)
    views = window.views
    views.slider.setValue(17)
    assert views.shown_index == 17 and "step 17 / 50" in views.step_label.text()
    frame = Frames(result).frame(17)
    np.testing.assert_array_equal(views.point_panes[0].points, frame.xt)
    np.testing.assert_array_equal(views.point_panes[1].points, frame.x0)
    assert window.plots.cursors["noise"].value() == 17
    views.slider.setValue(0)
    assert views.point_panes[1].points is None  # no x̂0 before the first update


def test_play_replays_the_run_to_its_end(qtbot, window):
    window.session.update(steps="30", batch_points=50)
    run_to_end(qtbot, window)
    seen = []
    window.views.step_shown.connect(seen.append)
    window.views.slider.setValue(0)
    window.views.play_button.click()
    qtbot.waitUntil(lambda: not window.views.play_button.isChecked(), timeout=RUN_TIMEOUT_MS)
    assert seen[0] == 0 and seen[-1] == 30 and len(seen) > 2 and seen == sorted(seen)


def test_controls_that_do_not_apply_are_disabled_with_a_reason(qtbot, window):
    panel = window.guidance_panel
    for kind in ("classifier", "cfg", "both"):
        assert panel.kind.item_enabled(kind)
    assert not panel.scale.isEnabled() and "classifier guidance" in panel.scale.toolTip()
    window.set_bundle(tiny_bundle((3, 8, 8), num_classes=3, name="no-extras"))
    assert not panel.kind.item_enabled("classifier") and "classifier" in panel.kind.item_reason("classifier")
    assert not panel.kind.item_enabled("cfg") and "null label" in panel.kind.item_reason("cfg")
    assert not panel.kind.item_enabled("both")
    assert [panel.target.itemText(i) for i in range(panel.target.count())] == ["kind 0", "kind 1", "kind 2"]
    assert not window.model_panel.precision.item_enabled("fp16")
    window.sampler_panel.sampler.setCurrentIndex(window.sampler_panel.sampler.findData("ddpm"))
    window.sampler_panel.sampler.activated.emit(window.sampler_panel.sampler.currentIndex())
    assert window.session.settings.sampler == "ddpm"
    assert not window.sampler_panel.eta.isEnabled() and "DDIM" in window.sampler_panel.eta.toolTip()


def test_cfg_strength_is_typed_as_w_or_as_gamma(qtbot, window):
    from PySide6.QtCore import Qt

    panel = window.guidance_panel
    window.session.update(guidance="cfg", weight=2.0)
    assert panel.gamma.isEnabled() and panel.gamma.value() == 3.0
    panel.gamma.lineEdit().selectAll()
    qtbot.keyClicks(panel.gamma.lineEdit(), "7.5")
    qtbot.keyClick(panel.gamma.lineEdit(), Qt.Key.Key_Return)
    assert window.session.request().guidance.weight == 6.5 and panel.weight.value() == 6.5
    panel.weight.lineEdit().selectAll()
    qtbot.keyClicks(panel.weight.lineEdit(), "0")
    qtbot.keyClick(panel.weight.lineEdit(), Qt.Key.Key_Return)
    assert window.session.request().guidance.weight == 0.0 and panel.gamma.value() == 1.0
    window.session.update(guidance="none")
    assert not panel.gamma.isEnabled() and "classifier-free" in panel.gamma.toolTip()


def test_classifier_guidance_plots_probability_and_norm(qtbot, window):
    panel = window.guidance_panel
    panel.kind.setCurrentIndex(panel.kind.findData("classifier"))
    panel.kind.activated.emit(panel.kind.currentIndex())
    assert panel.scale.isEnabled() and not panel.weight.isEnabled()
    panel.scale.setValue(4.0)
    window.session.update(steps="40", batch_points=200)
    assert window.session.request().guidance.scale == 4.0
    result = run_to_end(qtbot, window)
    _, norm = window.plots.curve_data("norm")
    assert len(norm) == 40 and (norm > 0).all()
    np.testing.assert_allclose(norm, result.track("guidance_norm")[1:], rtol=1e-5)


def test_corrupt_checkpoint_shows_an_error_and_keeps_the_model(qtbot, window, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a model file at all")
    with qtbot.waitSignal(window.error_shown, timeout=LOAD_TIMEOUT_MS) as error:
        window.open_checkpoint(str(bad))
    assert "broken.safetensors" in error.args[0] and window.last_error == error.args[0]
    assert window._message_box is not None and window._message_box.isVisible()
    assert window.bundle.name == "toy-gmm"
    window.session.update(steps="5", batch_points=10)
    assert run_to_end(qtbot, window).completed  # still usable


def test_bad_steps_are_refused_with_a_message(qtbot, window):
    window.sampler_panel.steps.setEditText("lots")
    assert window.session.settings.steps == "lots"
    assert not window.start_run()
    assert "steps" in window.last_error.lower() and window.worker is None


def test_nan_during_sampling_is_reported(qtbot, window):
    bundle = tiny_bundle((2,), name="nan-model")
    bundle.model.weight.data.fill_(float("nan"))
    window.set_bundle(bundle)
    window.session.update(steps="5", batch_points=4)
    with qtbot.waitSignal(window.error_shown, timeout=RUN_TIMEOUT_MS) as error:
        window.start_run()
    assert "NaN" in error.args[0]
    qtbot.waitUntil(lambda: window.run_panel.start_button.isEnabled(), timeout=RUN_TIMEOUT_MS)


def test_closing_during_a_run_stops_the_worker(qtbot, window):
    window.set_bundle(tiny_bundle((2,), delay=0.02, name="slow"))
    window.session.update(steps="1000", batch_points=10)
    with qtbot.waitSignal(window.frame_shown, timeout=RUN_TIMEOUT_MS):
        window.start_run()
    worker = window.worker
    window.close()
    assert not worker.is_running() and worker.stopping
    assert len(worker.trajectory) < 1001


def test_a_2d_models_backdrop_being_sampled_stops_for_the_next_model_and_when_the_window_closes(qtbot, window):
    """Without a known dataset a 2-D model's backdrop is sampled on a helper thread (50 steps, here 2 s). Another
    model stops it at its next step, without drawing it; so does closing, which waits for it to end: a thread
    still inside torch when the interpreter exits aborts the process."""
    def sampling() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "backdrop" and t.is_alive()]

    drawn = []
    window.loader.backdrop_ready.connect(lambda *found: drawn.append(found))
    window.set_bundle(tiny_bundle((2,), delay=0.04, name="slow-a"))
    first = sampling()
    assert len(first) == 1
    window.set_bundle(tiny_bundle((2,), delay=0.04, name="slow-b"))
    qtbot.waitUntil(lambda: not first[0].is_alive(), timeout=1000)
    assert len(sampling()) == 1  # b's
    start = time.monotonic()
    window.close()
    assert not sampling() and time.monotonic() - start < 1.0
    qtbot.wait(50)
    assert drawn == []


def test_settings_and_model_persist_across_restarts(qtbot, window, settings):
    from desktop_app.main_window import MainWindow

    window.session.update(seed=4242, guidance="cfg", weight=5.5, steps="ddim20", class_index=6)
    window.resize(window.width(), 480)
    window.plots_dock.hide()
    window.close()
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    assert again.session.settings.seed == 4242 and again.session.settings.weight == 5.5
    assert again.size().height() == 480 and again.plots_dock.isHidden()
    with qtbot.waitSignal(again.model_loaded, timeout=LOAD_TIMEOUT_MS):
        again.begin_startup()
    assert again.session.settings.guidance == "cfg" and again.session.settings.class_index == 6
    assert again.guidance_panel.gamma.value() == 6.5
    assert again.sampler_panel.seed.value() == 4242


def test_device_list_disables_absent_devices(window):
    from core.device import available_devices

    present = available_devices()
    for kind in ("cuda", "mps"):
        assert window.model_panel.device.item_enabled(kind) == (kind in present)
    assert window.model_panel.device.item_enabled("cpu") and window.model_panel.device.item_enabled("auto")


def test_open_checkpoint_adds_the_model_and_samples_it(qtbot, window, tmp_path):
    import torch

    from core import ModelBundle, ModelConfig
    from core.checkpoints import save_bundle
    from core.models import build_network

    network = {"data_dim": 2, "width": 16, "depth": 1, "num_classes": 3}
    config = ModelConfig(architecture="mlp", data_shape=(2,), network=network, num_classes=3, null_label=True,
                         class_names=("left", "middle", "right"), clip="none")
    torch.manual_seed(0)
    path = save_bundle(ModelBundle("my-mlp", config, build_network("mlp", network)), tmp_path / "my-mlp.safetensors")
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS) as loaded:
        window.open_checkpoint(str(path))
    assert loaded.args == ["my-mlp"] and window.bundle.name == "my-mlp"
    assert str(path) in window.model_panel.keys()
    panel = window.guidance_panel
    assert panel.kind.item_enabled("cfg") and not panel.kind.item_enabled("classifier")
    assert [panel.target.itemText(i) for i in range(panel.target.count())] == ["left", "middle", "right"]
    window.session.update(steps="10", batch_points=30, guidance="cfg", class_index=2)
    result = run_to_end(qtbot, window)
    assert result.model_name == "my-mlp" and result.request.label == 2 and result.samples.shape == (30, 2)


def test_unreadable_guided_diffusion_file_is_an_error(qtbot, window, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x04 not a pickle")
    with qtbot.waitSignal(window.error_shown, timeout=LOAD_TIMEOUT_MS) as error:
        window.open_checkpoint(str(bad))
    assert "model.pt" in error.args[0] and window.bundle.name == "toy-gmm"
    with qtbot.waitSignal(window.error_shown, timeout=LOAD_TIMEOUT_MS) as missing:
        window.open_checkpoint(str(tmp_path / "absent.safetensors"))
    assert "No such file" in missing.args[0]
    assert window.run_panel.start_button.isEnabled()


def test_scrubbing_during_a_run_holds_the_chosen_step(qtbot, window):
    window.set_bundle(tiny_bundle((2,), delay=0.005, name="slowish"))
    window.session.update(steps="300", batch_points=8)
    with qtbot.waitSignal(window.frame_shown, timeout=RUN_TIMEOUT_MS):
        window.start_run()
    qtbot.waitUntil(lambda: window.views.slider.maximum() >= 3, timeout=RUN_TIMEOUT_MS)
    window.views.slider.setValue(2)
    held = window.worker.trajectory.frame(2).xt
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        pass
    assert window.views.shown_index == 2 and window.views.slider.maximum() == 300
    np.testing.assert_array_equal(window.views.point_panes[0].points, held)


def test_sampled_curves_say_so_and_exact_curves_fill_every_step(qtbot, window):
    from .test_worker import SlowClassifier

    window.bundle.classifier = SlowClassifier(window.bundle.classifier, 0.05)
    window.session.update(steps="30", batch_points=20, class_index=1)
    assert not window.plots_pane.exact_box.isChecked()
    run_to_end(qtbot, window)
    steps, prob = window.plots.curve_data("prob")
    assert steps.tolist() == [1.0, 30.0]  # the curve's ends; any pass in between would exceed 3 %
    note = window.plots.sampled_notes["prob"]
    assert note.isVisible() and note.textItem.toPlainText() == "sampled at 2 of 30 steps"
    assert window.plots.curves["prob"].opts["symbol"] == "o"

    window.plots_pane.exact_box.click()
    assert window.session.settings.exact_curves and window.session.to_dict()["exact_curves"] is True
    run_to_end(qtbot, window)
    steps, prob = window.plots.curve_data("prob")
    assert steps.tolist() == list(range(1, 31)) and np.isfinite(prob).all()
    assert not window.plots.sampled_notes["prob"].isVisible()
    assert window.plots.curves["prob"].opts["symbol"] is None


def test_a_start_as_the_last_run_ends_gets_none_of_its_curves(qtbot, window):
    """The end of a run is drawn over a few turns before `run_finished`; a run started in between keeps its own
    (empty) plots and guidance views, and the ended run still reaches the library."""
    window.set_bundle(tiny_bundle((2,), delay=0.02, name="slow"))
    window.session.update(steps="12", batch_points=10)
    window.start_run()
    first = window.worker
    recorded = []
    window.results.run_recorded.connect(recorded.append)
    finished = []
    window.run_finished.connect(finished.append)
    window.session.update(steps="400")
    first.finished.connect(lambda _result: window.start_run())  # right after the window's own slot
    qtbot.waitUntil(lambda: bool(finished), timeout=RUN_TIMEOUT_MS)
    assert finished[0].num_steps == 12 and window.is_running() and window.worker is not first
    assert window.views.source is window.worker.trajectory
    assert all(len(window.plots.curve_data(key)[0]) < 12 for key in ("prob", "norm", "noise"))  # not the 13 of run 1
    qtbot.waitUntil(lambda: len(recorded) == 1, timeout=RUN_TIMEOUT_MS)
    assert recorded[0].request.steps == "12"
    window.stop_run()


def test_a_live_refresh_tells_the_progress_of_the_step_on_screen_before_redrawing_the_curves(qtbot, window, monkeypatch):
    """Each throttled refresh of a live run updates the progress first, with the frame just painted; behind
    the curves and the guidance plots, each in a turn of its own, it used to tell a step long gone."""
    window.set_bundle(tiny_bundle((2,), delay=0.004))
    window.session.update(sampler="ddim", steps="150", batch_points=50)
    events = []
    show_progress, set_curve = window.run_panel.show_progress, window.plots.set_curve
    monkeypatch.setattr(window.run_panel, "show_progress",
                        lambda index, *args: (events.append(("progress", index)), show_progress(index, *args)))
    monkeypatch.setattr(window.plots, "set_curve",
                        lambda key, values: (events.append(("curve", key)), set_curve(key, values)))
    shown = []
    window.frame_shown.connect(shown.append)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        window.start_run()
    live = events[: events.index(("progress", 150))]  # (the end of the run shows its own progress)
    batches = [i for i, event in enumerate(live) if event == ("curve", "prob")]
    assert len(batches) >= 2  # a run of ~0.7 s is refreshed every 0.15 s
    assert [live[i - 1 : i + 3] for i in batches] == [
        [live[i - 1], ("curve", "prob"), ("curve", "norm"), ("curve", "noise")] for i in batches]
    assert all(live[i - 1][0] == "progress" and live[i - 1][1] in shown for i in batches)
