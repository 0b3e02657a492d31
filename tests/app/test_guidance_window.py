"""The guidance views in the real window: maps and twin of an image run, arrows and class bands of toy-gmm,
choosing a sample, step-through of a live run, the help page."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
from PySide6.QtCore import QPointF, Qt

from core import guidance_views as V
from desktop_app.views.guidance_dock import TWIN_COLOR

from .conftest import RUN_TIMEOUT_MS, tiny_bundle
from .guided_bundle import guided_image_bundle
from .test_window import run_to_end


def drawn_paths(vertices: np.ndarray) -> list[np.ndarray]:
    """A path layer's vertices (settled part, then tail; NaN rows between paths) → each path's points once."""
    paths: dict[tuple, list] = {}
    for piece in np.split(vertices, np.flatnonzero(np.isnan(vertices[:, 0]))):
        piece = piece[np.isfinite(piece[:, 0])]
        if len(piece):
            start = tuple(piece[0])
            joined = next((key for key, pts in paths.items() if np.array_equal(pts[-1], piece[0])), None)
            if joined is None:
                paths[start] = list(piece)
            else:
                paths[joined].extend(piece[1:])
    return [np.array(points) for points in paths.values()]


def test_image_run_shows_maps_twin_and_class_bars(qtbot, window):
    window.set_bundle(guided_image_bundle())
    window.session.update(guidance="both", weight=3.0, scale=2.0, class_index=1, steps="12", batch_images=4,
                          maps=True, twin=True)
    result = run_to_end(qtbot, window)
    guidance = window.guidance
    assert window.guidance.panel.pages.currentWidget() is guidance.maps
    assert {V.CFG_MAP, V.CLASSIFIER_MAP, V.TWIN_X0, V.TWIN_DISTANCE, V.CLASS_PROBS} <= set(result.tracks)
    maps = guidance.maps
    assert maps.index == 12 and maps.scale > 0
    np.testing.assert_array_equal(maps.picture("cfg_map"), V.colorize(V.map_at(result.tracks, V.CFG_MAP, 12, 0), maps.scale))
    assert maps.picture("twin_x0") is not None and guidance.twin.isVisible()
    steps, distance = guidance.twin.curve_data("xt")
    np.testing.assert_array_equal(steps, np.arange(13))
    np.testing.assert_allclose(distance, [np.mean(d) for d in result.track(V.TWIN_DISTANCE)], rtol=1e-6)
    assert distance[0] == 0 and distance[-1] > 0  # the same noise, then guidance pulls the run away
    bars = guidance.bars  # all three classes of sample 0 at the last step, most probable first
    probs = V.probs_of(result.track(V.CLASS_PROBS)[12][0])
    assert bars.isVisible() and sorted(bars.shown) == [0, 1, 2]
    np.testing.assert_allclose(bars.heights, probs[bars.shown], rtol=1e-6)
    assert (np.diff(bars.heights) <= 0).all()
    # Clicking a tile of the x_t grid follows that sample: tile 3 of a 2×2 grid of 8×8 previews.
    pane = window.views.image_panes[0]
    click_scene(qtbot, pane, pane.item.mapToScene(QPointF(2 + 10 + 4, 2 + 10 + 4)))
    assert guidance.sample == 3 and maps.sample == 3
    np.testing.assert_array_equal(maps.picture("cfg_map"), V.colorize(V.map_at(result.tracks, V.CFG_MAP, 12, 3), maps.scale))
    window.views.slider.setValue(5)  # scrubbing moves the maps too
    np.testing.assert_array_equal(maps.picture("classifier_map"),
                                  V.colorize(V.map_at(result.tracks, V.CLASSIFIER_MAP, 5, 3), maps.scale))


def click_scene(qtbot, view, scene_point):
    """A left click on `view` at a point of its scene."""
    widget_point = view.mapFromScene(scene_point)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=widget_point)


def _analytic_score(mixture, points, timestep):
    abar = float(mixture.alphas_cumprod[timestep])
    offsets = points[:, None, :] - math.sqrt(abar) * mixture.means[None]
    var = abar * mixture.std**2 + 1 - abar
    resp = (-offsets.square().sum(-1) / (2 * var)).softmax(-1)
    return (-(resp[:, :, None] * offsets).sum(1) / var).numpy()


def test_toy_gmm_arrows_point_along_the_analytic_score(qtbot, window):
    window.session.update(guidance="classifier", scale=2.0, class_index=5, steps="20", batch_points=300, twin=True)
    run_to_end(qtbot, window)
    field = window.guidance.field
    window.views.slider.setValue(7)  # frame 7: the arrows of update 8, which moves these points
    qtbot.waitUntil(lambda: 8 in field.fields, timeout=RUN_TIMEOUT_MS)
    segments = field.arrows("score_arrows").reshape(-1, 6, 2)
    origins, tips = segments[:, 0], segments[:, 1]
    np.testing.assert_allclose(origins, field.points, atol=1e-6)
    timestep = window.bundle.sampling_schedule("20").coefficients(20 - 8).timestep
    score = _analytic_score(window.bundle.model, torch.from_numpy(field.points), timestep)
    drawn = tips - origins
    cosine = (drawn * score).sum(1) / (np.linalg.norm(drawn, axis=1) * np.linalg.norm(score, axis=1))
    assert cosine.min() > 0.999
    assert len(field.arrows("guidance_arrows")) == len(segments) * 6
    # The paths: 8 samples from x_T to frame 7; the twin's x̂0 cloud is drawn on the x̂0 pane.
    track = np.stack([np.asarray(field.run.tracks["xt"][i], np.float64) for i in range(8)], axis=1)  # (B, 8, 2)
    drawn = [path for layer in (field.paths, field.selected_path) for path in drawn_paths(layer.data())]
    assert len(drawn) == 8
    for path in drawn:  # each is one sample's x_T … x_7, vertex for vertex
        assert any(np.array_equal(path, track[b]) for b in range(len(track)))
    assert window.guidance.twin_cloud.group_colors == [TWIN_COLOR]
    window.guidance.panel.toggles["score_arrows"].setChecked(False)
    assert len(field.arrows("score_arrows")) == 0 and len(field.arrows("guidance_arrows")) > 0
    stack = window.guidance.stack
    assert stack.isVisible() and stack.bands.shape == (20, 9)  # steps 1 … 20
    np.testing.assert_allclose(stack.bands[:, -1], 1.0, rtol=1e-5)  # the bands fill [0, 1] at every step
    assert stack.bands[-1, 6] - stack.bands[-1, 5] > 0.9  # class 5's band, at the end nearly everything


def test_step_through_pauses_steps_and_runs_to_a_step(qtbot, window):
    window.set_bundle(tiny_bundle((2,), delay=0.005, name="slow-points"))
    window.session.update(steps="60", batch_points=10)
    panel = window.run_panel
    assert not panel.pause_button.isEnabled()
    window.start_run()
    panel.pause_button.click()  # Pause: the run holds after the step in progress
    worker = window.worker
    # held after the step in progress, and the GUI has heard of it
    qtbot.waitUntil(lambda: worker.held_at is not None and panel.pause_button.text() == "Resume",
                    timeout=RUN_TIMEOUT_MS)
    held = worker.held_at
    assert window.is_running()
    with qtbot.waitSignal(worker.held, timeout=RUN_TIMEOUT_MS) as one:
        panel.step_button.click()
    assert one.args[0] == held + 1
    panel.run_to_box.setValue(40)
    with qtbot.waitSignal(worker.held, timeout=RUN_TIMEOUT_MS) as to_40:
        panel.run_to_button.click()
    assert to_40.args[0] == 40 and len(worker.recorder) == 41
    qtbot.waitUntil(lambda: window.views.shown_index == 40, timeout=RUN_TIMEOUT_MS)  # the held step is on screen
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        panel.pause_button.click()  # Resume
    assert finished.args[0].completed and len(finished.args[0]) == 61
    assert not panel.pause_button.isEnabled() and panel.pause_button.text() == "Pause"


def test_stop_ends_a_held_run(qtbot, window):
    window.set_bundle(tiny_bundle((2,), delay=0.005, name="slow-points"))
    window.session.update(steps="50", batch_points=10)
    window.start_run()
    window.pause_run(True)
    qtbot.waitUntil(lambda: window.worker.held_at is not None, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.stop_run()
    assert not finished.args[0].completed


def test_twin_and_maps_options_say_when_they_do_not_apply(qtbot, window):
    panel = window.guidance_panel
    window.session.update(guidance="none")
    assert not panel.twin.isEnabled() and "itself" in panel.twin.toolTip()
    assert not panel.maps.isEnabled() and "arrows" in panel.maps.toolTip()  # toy-gmm is 2-D
    window.session.update(guidance="cfg")
    assert panel.twin.isEnabled() and "one more network pass" in panel.twin.toolTip()
    panel.twin.click()
    assert window.session.settings.twin


def test_help_page_is_illustrated_with_the_windows_own_views(qtbot, window):
    window.session.update(guidance="cfg", weight=2.0, steps="10", batch_points=100, twin=True)
    run_to_end(qtbot, window)
    page = window.show_help()
    qtbot.addWidget(page)
    text = page.browser.toPlainText()
    from desktop_app.views.captions import CAPTIONS

    for key in ("xt", "x0", "score_arrows", "twin_distance", "class_stack", "prob"):
        assert CAPTIONS[key].line in text
    assert page.pictures >= 4
    image = page.browser.document().resource(page.browser.document().ResourceType.ImageResource.value,
                                             "view://section0")
    assert image is not None and not image.isNull()


def test_a_live_runs_arrow_fields_are_computed_on_its_sampling_thread(qtbot, window, monkeypatch):
    """While a run is live its fields are computed between its steps, on the sampling thread (a third busy
    thread took the GUI thread's core on 2 cores); afterwards, scrubbing back, on the field helper thread."""
    import threading

    computed: list[tuple[str, int]] = []
    field_vectors = V.field_vectors

    def recorded(request, bundle, points, k):
        computed.append((threading.current_thread().name, k))
        return field_vectors(request, bundle, points, k)

    monkeypatch.setattr(V, "field_vectors", recorded)
    window.set_bundle(tiny_bundle((2,), delay=0.004, name="slow-points"))
    window.session.update(steps="150", batch_points=10, guidance="none")
    assert run_to_end(qtbot, window).completed
    field = window.guidance.field
    qtbot.waitUntil(lambda: 150 in field.fields, timeout=RUN_TIMEOUT_MS)  # the last update's, asked at the end
    live = [(name, k) for name, k in computed if k < 150]
    assert len(live) >= 2 and all(name.startswith("sampling") for name, _ in live)  # paced: a few a second
    assert [k for _, k in live] == sorted(k for _, k in live)  # each for the step then on screen
    count = len(computed)
    window.views.show_step(3)
    qtbot.waitUntil(lambda: 4 in field.fields, timeout=RUN_TIMEOUT_MS)
    after = computed[count:]  # (with another plane, the step left is asked for again first)
    assert after[-1][1] == 4 and all(name.startswith("serial-task") for name, _ in after)


def test_a_live_frames_overlays_are_drawn_in_a_turn_of_their_own_before_its_x_t_paint(qtbot, window):
    """A live 2-D frame's turn only places the points; the step's guidance overlays (step_shown: arrows, paths,
    the chosen sample, the cursors) follow in a turn of their own, before the x_t pane is painted, for the
    newest step when frames came faster than the turns. Scrubbing still shows everything at once."""
    from PySide6.QtCore import QEvent, QObject

    from desktop_app.run.trajectory import Frames

    window.session.update(steps="6", batch_points=50)
    result = run_to_end(qtbot, window)
    frames, views = Frames(result), window.views
    events: list[tuple] = []

    class Paints(QObject):
        def eventFilter(self, watched, event):
            if event.type() == QEvent.Type.Paint:
                events.append(("x_t painted",))
            return False

    paints = Paints()
    views.point_panes[0].viewport().installEventFilter(paints)
    views.step_shown.connect(lambda index: events.append(("step shown", index)))
    views.begin(frames, frames.num_steps)
    qtbot.waitUntil(lambda: not views.paints.busy, timeout=RUN_TIMEOUT_MS)
    for newest in ([1], [2, 3]):
        events.clear()
        for index in newest:
            views.new_frame(frames.frame(index))
        assert events == []  # nothing of it in the frame's own turn
        qtbot.waitUntil(lambda: not views.paints.busy, timeout=RUN_TIMEOUT_MS)
        assert events[0] == ("step shown", newest[-1]) and ("x_t painted",) in events[1:]
        assert ("step shown", newest[0]) not in events[1:] and window.guidance.index == newest[-1]
    events.clear()
    views.slider.setValue(1)
    assert events == [("step shown", 1)] and window.guidance.index == 1


def test_a_live_runs_class_share_cursor_follows_the_refreshes_not_every_frame(qtbot, window):
    """Each move of the class-share plot's cursor repaints the plot, bands and all: while a run is live it moves
    with the plot's refreshes (a few times a second); at the end, and when scrubbing, to the step shown."""
    stack = window.guidance.stack
    moves, frames = [], []
    original = stack.set_cursor
    stack.set_cursor = lambda index: (moves.append(index), original(index))
    window.frame_shown.connect(frames.append)
    window.session.update(steps="200", batch_points=50, guidance="cfg", weight=2.0, watch=True, watch_rate=100)
    run_to_end(qtbot, window)
    assert stack.isVisible() and len(frames) > 30
    assert len(moves) <= len(frames) / 3 and moves[-1] == 200 == stack.cursor.value()
    window.views.slider.setValue(37)
    assert stack.cursor.value() == 37


def test_a_live_frame_is_taken_only_once_the_turns_of_the_one_before_are_done(qtbot, window, monkeypatch):
    """Frames wait for the pane paints and the redraws the frame before began, and each is taken in a turn of its
    own (a part of Turns), so that a frame's work and the repaints it sets off never share an event-loop pass
    with those still to come. The redraws are slowed here past the frame interval: taken whenever ready, frames
    came in the middle of them."""
    import time

    from desktop_app.run.worker import SamplingWorker

    from desktop_app import tasks

    busy_at_take: list[bool] = []
    in_a_turn: list[bool] = []
    take, take_turn = SamplingWorker.take_frame, tasks.Turns._take_turn
    turn_running = [False]

    def recording_take(worker):
        busy_at_take.append(window.views.paints.busy or window._refreshes.busy)
        in_a_turn.append(turn_running[0])
        return take(worker)

    def marked_turn(turns):
        turn_running[0] = True
        try:
            take_turn(turns)
        finally:
            turn_running[0] = False

    monkeypatch.setattr(SamplingWorker, "take_frame", recording_take)
    monkeypatch.setattr(tasks.Turns, "_take_turn", marked_turn)
    set_curve = window.plots.set_curve
    monkeypatch.setattr(window.plots, "set_curve", lambda *args: (time.sleep(0.03), set_curve(*args)))
    window.session.update(steps="150", batch_points=50, guidance="cfg", weight=2.0, watch=True, watch_rate=100)
    run_to_end(qtbot, window)
    assert len(busy_at_take) > 5 and not any(busy_at_take) and all(in_a_turn)


def test_at_a_live_change_of_plane_the_paths_come_back_after_the_panes_paints(qtbot):
    """While a run is live, a change of the plane leaves the paths' settled parts out of the panes' next paints
    (they, the points and the axes are all drawn anew at the new scale); they come back in a turn after those
    paints, and a field that arrives is drawn there too. Outside a live run nothing waits."""
    from desktop_app.tasks import Turns
    from desktop_app.views.field_arrows import FieldOverlay
    from desktop_app.views.live import PointPane

    pane = PointPane("x_t")
    qtbot.addWidget(pane)
    paints = Turns()
    overlay = FieldOverlay(pane, after=paints)
    trace = np.random.default_rng(0).normal(size=(3, 300, 2)).cumsum(axis=1) / 10
    overlay.live = True
    overlay.paths.show(trace, key="run")
    settled = overlay.paths.settled + overlay.selected_path.settled
    assert all(item.isVisible() for item in settled)
    order: list[str] = []
    paints.add(lambda: order.append("x_t painted"), lambda: order.append("x0 painted"))
    pane.show_extent(4.0)
    assert not any(item.isVisible() for item in settled)
    overlay.run, overlay.index = SimpleNamespace(num_steps=10), 3  # frame 3 on screen: update 4's field is drawn
    vectors = np.ones_like(overlay.points)
    overlay._on_field((overlay._generation, 4), (vectors, -vectors))
    assert len(overlay.arrows("score_arrows")) == 0  # not yet
    overlay._later.add(lambda: order.append("after"))
    qtbot.waitUntil(lambda: not overlay._later.busy, timeout=2000)
    assert order == ["x_t painted", "x0 painted", "after"] and all(item.isVisible() for item in settled)
    assert len(overlay.arrows("score_arrows")) == len(overlay.arrows("guidance_arrows")) == 6 * len(vectors)
    overlay.live, overlay.run, overlay.index = False, None, -1
    pane.show_extent(2.0)
    assert all(item.isVisible() for item in settled)
    overlay.close(1.0)


def test_the_chosen_samples_path_is_two_pixels_wide(qtbot):
    """Drawn as four 1-px strokes a pixel apart (much cheaper for Qt than one 2-px stroke): a horizontal and a
    vertical segment each cover two rows or columns of pixels, in the pen's colour."""
    import pyqtgraph as pg

    from desktop_app.views.field_arrows import SELECTED_PEN, BoldCurve

    plot = pg.PlotWidget(background="w")
    qtbot.addWidget(plot)
    plot.resize(300, 300)
    plot.hideAxis("left"), plot.hideAxis("bottom")
    plot.setRange(xRange=(0, 10), yRange=(0, 10), padding=0)
    curve = BoldCurve(pen=SELECTED_PEN, connect="finite")
    curve.setData([2.0, 8.0, np.nan, 5.0, 5.0], [5.0, 5.0, np.nan, 1.0, 3.0])
    plot.addItem(curve)
    plot.show()
    qtbot.waitExposed(plot)
    image = plot.grab().toImage()
    dark = np.array([[image.pixelColor(x, y).value() < 100 for x in range(image.width())]
                     for y in range(image.height())])
    rows = np.flatnonzero(dark[:, image.width() // 3])  # across the horizontal segment
    columns = np.flatnonzero(dark[int(image.height() * 0.8)])  # across the vertical one
    assert len(rows) == 2 and rows[1] == rows[0] + 1
    assert len(columns) == 2 and columns[1] == columns[0] + 1
