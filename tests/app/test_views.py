"""What the 2-D panes really show, read back from the window's pixels: no points left over from an
earlier run, and a clean slate when another model is loaded."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage

from desktop_app.run.trajectory import Frames

from .conftest import LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS


def run_to_end(qtbot, window, **settings):
    window.session.update(**settings)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
    return finished.args[0]


def on_screen(qtbot, window, widget) -> np.ndarray:
    """(H, W, 3) uint8: the pixels the window's backing store holds for `widget` now (what the user
    sees, including regions a repaint forgot), after pending paints have run."""
    qtbot.wait(50)
    shot = widget.screen().grabWindow(window.winId()).toImage().convertToFormat(QImage.Format.Format_RGB888)
    corner = widget.mapTo(window, QPoint(0, 0))
    shot = shot.copy(corner.x(), corner.y(), widget.width(), widget.height())
    rows = np.frombuffer(shot.constBits(), np.uint8).reshape(shot.height(), shot.bytesPerLine())
    return rows[:, : 3 * shot.width()].reshape(shot.height(), shot.width(), 3).copy()


def tinted(pixels: np.ndarray, rgb) -> int:
    """How many pixels carry the hue of `rgb` drawn over white: the pattern of its channel order
    (e.g. green: G > R ≈ B; brown: R > G > B), at least 12 levels away from grey."""
    p = pixels.astype(int)
    order = np.argsort(rgb)
    lo, mid, hi = (p[..., order[k]] for k in range(3))
    spread = hi - lo
    if rgb[order[1]] - rgb[order[0]] < 20:  # two channels alike (green, blue): they stay alike
        ok = np.abs(mid - lo) <= 8
    else:
        ok = (mid - lo >= 4) & (hi - mid >= 4)
    return int(((spread >= 12) & ok).sum())


def test_x0_pane_shows_only_the_new_runs_points(qtbot, window):
    from core.images import PALETTE

    green, brown = PALETTE[2], PALETTE[5]
    for pane in window.views.point_panes:
        pane.backdrop.setVisible(False)  # only the cloud has colour now
    run_to_end(qtbot, window, guidance="cfg", weight=4.0, class_index=2, steps="40", batch_points=1000)
    x0_pane = window.views.point_panes[1]
    assert tinted(on_screen(qtbot, window, x0_pane), green) > 10  # the first run's cloud is seen
    result = run_to_end(qtbot, window, guidance="classifier", scale=3.0, class_index=5)
    last = Frames(result).frame(len(result) - 1)
    for pane, points in zip(window.views.point_panes, (last.xt, last.x0)):
        assert pane.cloud.group_colors == [tuple(int(c) for c in brown)]
        np.testing.assert_array_equal(pane.points, points)
        pixels = on_screen(qtbot, window, pane)
        assert tinted(pixels, green) == 0 and tinted(pixels, brown) > 10
    window.views.slider.setValue(17)
    pixels = on_screen(qtbot, window, x0_pane)
    np.testing.assert_array_equal(x0_pane.points, Frames(result).frame(17).x0)
    assert tinted(pixels, green) == 0 and tinted(pixels, brown) > 10
    window.views.slider.setValue(0)  # no x̂0 yet at step 0: the pane holds no points at all
    pixels = on_screen(qtbot, window, x0_pane)
    assert x0_pane.cloud.group_colors == [] and tinted(pixels, green) == tinted(pixels, brown) == 0


def test_loading_another_model_clears_the_last_runs_views(qtbot, window):
    run_to_end(qtbot, window, steps="10", batch_points=200, class_index=4, guidance="cfg", weight=1.0)
    views, plots = window.views, window.plots
    assert views.point_panes[1].points is not None and views.slider.isEnabled()
    assert all(len(plots.curve_data(key)[1]) for key in ("prob", "norm", "noise"))
    assert window.run_panel.progress.format().startswith("done")
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.loader.load("toy-scurve")
    assert views.source is None and views.shown_index == -1 and views.step_label.text() == "no run yet"
    assert not views.slider.isEnabled() and not views.play_button.isEnabled()
    for pane in views.point_panes:
        assert pane.points is None and pane.cloud.group_colors == []
    assert all(len(plots.curve_data(key)[1]) == 0 for key in ("prob", "norm", "noise"))  # no stale curve
    assert window.run_panel.progress.format() == "idle" and window.run_panel.progress.value() == 0
    assert window.current_result() is not None  # the run itself is kept (save, library)


def view_box(pane) -> tuple[tuple[float, float], tuple[float, float]]:
    (x0, x1), (y0, y1) = pane.getViewBox().viewRange()
    return (x0, x1), (y0, y1)


def test_2d_views_frame_the_models_data_and_hold_still_during_a_run(qtbot, window):
    pane = window.views.point_panes[0]
    qtbot.waitUntil(lambda: pane.backdrop.group_colors != [], timeout=LOAD_TIMEOUT_MS)
    data = np.concatenate([pts for _, _, pts in pane.backdrop._groups])
    lo, hi = data.min(axis=0), data.max(axis=0)  # toy-gmm: the unit circle's clusters, about ±1.3
    (x0, x1), (y0, y1) = view_box(pane)
    assert x0 < lo[0] and x1 > hi[0] and y0 < lo[1] and y1 > hi[1]  # all the data is in view
    assert min(x1 - x0, y1 - y0) < 1.8 * (hi - lo).max()  # and fills the pane's narrow side
    box = pane.getViewBox()
    np.testing.assert_allclose((x1 - x0) / box.width(), (y1 - y0) / box.height(), rtol=1e-3)  # aspect 1
    ranges = []
    window.frame_shown.connect(lambda _i: ranges.append(view_box(pane)))
    run_to_end(qtbot, window, sampler="ddpm", steps="100", batch_points=500)
    assert len(ranges) >= 1 and all(r == ((x0, x1), (y0, y1)) for r in ranges)
    assert view_box(pane) == ((x0, x1), (y0, y1))


def test_a_one_step_run_plots_on_whole_steps(qtbot, window):
    run_to_end(qtbot, window, steps="1", batch_points=100)
    for key in ("prob", "norm", "noise"):
        axis = window.plots.plots[key].getAxis("bottom")
        low, high = window.plots.plots[key].viewRange()[0]
        ticks = [v for _spacing, values in axis.tickValues(low, high, 300) for v in values]
        assert ticks and all(float(v).is_integer() for v in ticks) and {0.0, 1.0} <= set(ticks)
    run_to_end(qtbot, window, steps="200")
    axis = window.plots.plots["noise"].getAxis("bottom")
    ticks = [v for _spacing, values in axis.tickValues(0, 200, 300) for v in values]
    assert 5 <= len(ticks) <= 60 and all(float(v).is_integer() for v in ticks)


def test_training_data_is_pale_and_labelled_under_rimmed_samples(qtbot, window):
    from core.images import PALETTE

    with qtbot.waitSignal(window.loader.backdrop_ready, timeout=LOAD_TIMEOUT_MS):
        with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
            window.loader.load("toy-scurve")
    for box in window.guidance.panel.toggles.values():
        box.setChecked(False)  # no arrow overlays: the pane shows data and samples only
    run_to_end(qtbot, window, batch_points=16, guidance="cfg", weight=2.0, class_index=1, steps="20")
    pane = window.views.point_panes[1]
    orange = tuple(int(c) for c in PALETTE[1])
    assert pane.cloud.group_colors == [orange] and pane.cloud.edge is not None
    assert len(pane.backdrop.group_colors) == 4 and all(min(c) >= 160 for c in pane.backdrop.group_colors)
    assert pane.backdrop.zValue() < pane.cloud.zValue()
    assert pane.legend.isVisible() and [label.text for _, label in pane.legend.items] == ["training data", "samples"]
    pixels = on_screen(qtbot, window, pane).astype(int)
    rims = ((pixels.max(axis=-1) < 70)).sum()  # the samples' dark rims (axes and text are grey, not this dark)
    full = ((np.abs(pixels - orange) < 25).all(axis=-1)).sum()  # the samples' own colour, not washed out
    assert rims > 16 and full > 16

    def pale(p: np.ndarray) -> int:  # washed-out class colours: light, but not grey
        return int(((p.min(axis=-1) > 150) & (p.max(axis=-1) - p.min(axis=-1) > 25)).sum())

    window.views.data_box.setChecked(False)
    assert not pane.backdrop.isVisible() and not pane.legend.isVisible()
    assert pale(pixels) > 500 and pale(on_screen(qtbot, window, pane).astype(int)) < 50
    window.views.data_box.setChecked(True)
    assert pane.backdrop.isVisible() and pane.legend.isVisible()


def test_the_guidance_term_axis_moves_only_to_round_numbers(qtbot):
    """The ‖Δε‖ plot's y axis grows to 1, 2 or 5 × 10^k above the largest value so far (a few redraws of the
    axis per run, not one per update), and starts again for a new run."""
    from desktop_app.views.plots import StepPlots

    plots = StepPlots()
    qtbot.addWidget(plots)
    plots.set_steps(100)
    nan = np.full(101, np.nan)
    tops = []
    for known, largest in ((5, 0.3), (10, 0.45), (20, 1.7), (30, 1.9), (40, 4.2)):
        norm = nan.copy()
        norm[1:known] = np.linspace(0.01, largest, known - 1)
        plots.set_curves(nan, norm, nan)
        low, high = plots.plots["norm"].viewRange()[1]
        assert low <= 0 <= largest <= high
        tops.append(high / 1.02)  # the range's 2 % padding
    np.testing.assert_allclose(tops, [0.5, 0.5, 2, 2, 5], rtol=1e-3)
    plots.set_steps(100)
    norm = nan.copy()
    norm[1:4] = 0.03
    plots.set_curves(nan, norm, nan)
    np.testing.assert_allclose(plots.plots["norm"].viewRange()[1][1] / 1.02, 0.05, rtol=1e-3)


def test_the_step_axes_are_set_only_when_the_span_changes(qtbot):
    """A run of as many steps as the last leaves the step axes (and their drawings) alone; another span, or a
    short run's whole-number ticks, sets them."""
    from desktop_app.views.plots import StepPlots

    plots = StepPlots()
    qtbot.addWidget(plots)
    plots.show()
    plots.set_steps(100)
    axes = [plot.getAxis("bottom") for plot in plots.plots.values()]
    qtbot.waitUntil(lambda: all(axis.picture is not None for axis in axes))  # drawn
    assert all(plot.viewRange()[0] == pytest.approx([-2, 102]) for plot in plots.plots.values())
    drawings = [axis.picture for axis in axes]
    plots.set_steps(100)
    assert [axis.picture for axis in axes] == drawings  # nothing to draw again
    plots.set_steps(4)
    assert all(plot.viewRange()[0] == pytest.approx([-0.08, 4.08]) for plot in plots.plots.values())
    assert all(axis.picture is None and axis._tickSpacing == [(1, 0), (1, 0)] for axis in axes)
    plots.set_steps(100)
    assert all(axis._tickSpacing is None for axis in axes)


def test_an_axis_returning_to_a_range_draws_from_its_kept_drawing(qtbot):
    """The 2-D panes move between a few planes every run; an axis lays out its ticks and labels once per
    range it shows (views/point_cloud.remember_axis_drawings), and a different range gets its own drawing."""
    from desktop_app.views.live import PointPane

    pane = PointPane("x_t")
    qtbot.addWidget(pane)
    pane.resize(400, 400)
    pane.show()
    qtbot.waitExposed(pane)
    axis = pane.getPlotItem().getAxis("bottom")
    laid_out, pictures = [], []
    layout = axis.generateDrawSpecs
    axis.generateDrawSpecs = lambda painter: laid_out.append(tuple(axis.range)) or layout(painter)
    for extent in (2.0, 4.0, 2.0, 4.0, 2.0):
        pane.show_extent(extent)
        pane.grab()  # paints
        pictures.append(axis.picture)
    assert len(laid_out) == 2 and laid_out[1][1] / laid_out[0][1] == pytest.approx(2.0, rel=1e-3)
    assert pictures[0] is pictures[2] is pictures[4] and pictures[1] is pictures[3]
    assert pictures[0] is not pictures[1]


def pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : 3 * image.width()].reshape(image.height(), image.width(), 3).copy()


def test_the_2d_panes_axes_are_drawn_ahead_for_every_plane_as_they_would_be_drawn_then(qtbot):
    """Once the panes have kept their size a moment, their axes are drawn over every plane of POINT_EXTENTS in
    idle turns: a first move to a plane (a live frame whose x̂0 overshoots) lays out no axis, and shows the very
    pixels an axis drawn then shows."""
    from desktop_app.views.live import POINT_EXTENTS, LiveViews

    def views() -> LiveViews:
        v = LiveViews()
        qtbot.addWidget(v)
        v.resize(900, 450)
        v.show()
        qtbot.waitExposed(v)
        return v

    ahead, fresh = views(), views()
    for pane in fresh.point_panes:  # (this one draws each axis when it first shows a plane)
        pane.reshaped.disconnect()
    fresh._ahead_timer.stop()
    qtbot.waitUntil(lambda: not ahead._ahead_timer.isActive() and not ahead.ahead.busy, timeout=RUN_TIMEOUT_MS)
    laid_out: list[float] = []
    for pane in ahead.point_panes:
        for name in ("bottom", "left"):
            axis = pane.getAxis(name)
            layout = axis.generateDrawSpecs
            axis.generateDrawSpecs = lambda painter, axis=axis, layout=layout: (laid_out.append(axis.range[1])
                                                                                 or layout(painter))
    for extent in (3.0, 24.0, 2.5, 64.0):
        assert extent in POINT_EXTENTS
        for v in (ahead, fresh):
            v.point_panes[0].show_extent(extent)
        for a, b in zip(ahead.point_panes, fresh.point_panes):
            assert np.array_equal(pixels(a), pixels(b))
    assert laid_out == []


def test_a_model_guided_by_the_mixtures_exact_classifier_has_the_mixture_as_its_backdrop(monkeypatch):
    """toy-gmm-mlp (trained on toy-gmm's mixture, carrying its exact classifier) shows the mixture itself, drawn
    exactly as toy-gmm's, and samples nothing for it (that took a second of CPU as its first run started);
    toy-scurve draws its dataset; a 2-D model with no known data is sampled."""
    from core import ModelBundle, ModelConfig, load_model
    from desktop_app.views import backdrop

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled a model whose data is known")

    monkeypatch.setattr(backdrop, "sample", no_sampling)
    mixture, colours = backdrop.data_backdrop(load_model("toy-gmm", "cpu"), num=300)
    learnt, learnt_colours = backdrop.data_backdrop(load_model("toy-gmm-mlp", "cpu"), num=300)
    np.testing.assert_array_equal(learnt, mixture)
    np.testing.assert_array_equal(learnt_colours, colours)
    assert len(np.unique(colours, axis=0)) == 8
    scurve, _ = backdrop.data_backdrop(load_model("toy-scurve", "cpu"), num=300)
    assert scurve.shape == (300, 2) and not np.allclose(scurve[:, :2], mixture)
    monkeypatch.undo()
    unknown = load_model("toy-scurve", "cpu")
    unknown = ModelBundle("my-2d-model", ModelConfig(**{**vars(unknown.config), "num_classes": 0,
                                                        "class_names": (), "null_label": False}), unknown.model)
    sampled, none = backdrop.data_backdrop(unknown, num=50)
    assert sampled.shape == (50, 2) and none is None
    from core import SamplingRequest, final_sample

    request = SamplingRequest(model=unknown.name, sampler="ddim", steps="50", batch=50, seed=12345)
    np.testing.assert_array_equal(sampled, final_sample(request, unknown).x.numpy())  # the model's own samples
    stop = threading.Event()
    stop.set()
    assert backdrop.data_backdrop(unknown, num=50, cancelled=stop) is None


def test_an_image_pane_paints_its_pictures_pixels(qtbot):
    """The pane paints its picture from its own 32-bit copy: the grabbed widget shows each pixel's colour, and a
    new picture of the same size replaces the old one."""
    from desktop_app.views.live import ImagePane

    pane = ImagePane("test")
    qtbot.addWidget(pane)
    pane.resize(300, 300)
    pane.show()
    qtbot.waitExposed(pane)
    colours = np.array([[[230, 20, 10], [15, 200, 40]], [[5, 30, 240], [250, 250, 250]]], np.uint8)
    for picture in (colours, colours[::-1, ::-1].copy()):
        pane.show_image(picture)
        grabbed = pane.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        for row in range(2):
            for col in range(2):
                centre = pane.item.mapToScene(col + 0.5, row + 0.5)
                point = pane.mapFromScene(centre)
                pixel = grabbed.pixelColor(point.x(), point.y())
                assert (pixel.red(), pixel.green(), pixel.blue()) == tuple(picture[row, col])
    pane.show_image(None)
    assert pane.item.image is None
