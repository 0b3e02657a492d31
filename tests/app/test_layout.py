"""How the window shares its room: the per-step plots span the bottom, the 2-D panes are near square and
as large as the centre allows, the guidance dock is narrow for 2-D models, labels and titles fit."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtGui import QFontMetrics

from desktop_app.views.guidance_plots import NAME_AXIS_WIDTH, ClassBars, ClassStack, TwinDistance
from desktop_app.views.live import POINT_RANGE, LiveViews, extent_for, outside_text
from desktop_app.views.plots import IDLE_STEPS, StepPlots, round_top

from .conftest import LOAD_TIMEOUT_MS, tiny_bundle
from .test_views import run_to_end


def on_screen(qtbot, widget, width: int, height: int):
    """`widget` shown at width × height and exposed (closed with the test)."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.mark.parametrize("size", [(1600, 1000), (1920, 1080)])
def test_the_plots_span_the_bottom_and_the_2d_panes_take_the_centre(qtbot, window, size):
    window.resize(*size)
    qtbot.wait(50)
    settings, guidance, plots = (d.geometry() for d in (window.settings_dock, window.guidance_dock,
                                                         window.plots_dock))
    assert plots.left() >= settings.right() and plots.right() >= guidance.right() - 2  # under the right dock
    assert guidance.bottom() < plots.top()
    assert guidance.width() < 0.25 * size[0]  # 2-D: toggles and two small plots
    stack = window.views.stack
    first, second = window.views.point_panes
    assert first.size() == second.size() and first.y() == second.y() and second.x() > first.geometry().right()
    assert 1.0 <= first.height() / first.width() <= 1.31  # the plane at one scale: no tall, empty strips
    assert 2 * first.width() >= 0.95 * stack.width() or first.height() >= 0.95 * stack.height()
    narrow = guidance.width()
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.set_bundle(tiny_bundle((1, 8, 8)))
    qtbot.wait(50)
    assert window.guidance_dock.width() > narrow + 60  # images: room for the maps of one sample
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.loader.load("toy-gmm")
    qtbot.wait(50)
    assert window.guidance_dock.width() == narrow


def test_a_long_remark_does_not_push_a_plot_out_of_the_dock(qtbot, window):
    plots = window.plots
    plots.set_notes(prob="a remark much longer than the room a third of the dock gives to one plot's title")
    qtbot.wait(50)
    right = max(plot.sceneBoundingRect().right() for plot in plots.plots.values())
    assert right <= plots.width() + 1
    noise = plots.plots["noise"].sceneBoundingRect()
    assert noise.width() > 0.25 * plots.width()  # still a third of the room, not squeezed by its neighbour


def test_class_names_beside_the_bars_fit_their_axis(qtbot):
    bars = ClassBars()
    qtbot.addWidget(bars)
    names = tuple(f"n0{k:07d} great white shark, white shark, man-eater, Carcharodon carcharias" for k in range(12))
    bars.begin(names, 12, target=0)
    bars.show_probs(np.linspace(1, 2, 12) / np.linspace(1, 2, 12).sum())
    ticks = [label for _, label in bars.plot.getAxis("left")._tickLevels[0]]
    assert len(ticks) == 11 and list(bars.shown) == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 0]  # the top 10 and the target
    metrics = QFontMetrics(bars.plot.getAxis("left").style["tickFont"] or bars.font())
    assert all(metrics.horizontalAdvance(label) <= NAME_AXIS_WIDTH - 8 for label in ticks)


def test_bars_of_an_earlier_step_say_so_in_their_corner_without_laying_the_plot_out_again(qtbot):
    """The classifier's p(k | x_t) is not computed at every step: bars of an earlier step name it in the plot's
    bottom right corner, inside the view (beside the shortest bars), and the view lies inside the widget (its
    title's caption, wider than the view, pushed the view's right end out of sight). The title is not set again
    (each change of it laid the plot out again, at every redraw of a live run)."""
    bars = on_screen(qtbot, ClassBars(), 280, 240)  # (as narrow as in the plots' dock: its caption is wider)
    bars.begin(("a", "b", "c", "d"), 4, target=1)
    assert bars.plot.vb.sceneBoundingRect().right() <= bars.viewport().width()  # the whole view is on screen
    title = bars.plot.titleLabel.text
    retitled = []
    set_title = bars.plot.setTitle
    bars.plot.setTitle = lambda *args, **kwargs: (retitled.append(args), set_title(*args, **kwargs))
    probs = np.array([0.1, 0.6, 0.2, 0.1])
    bars.show_probs(probs)
    assert not bars.step_note.isVisible()
    for step in (7, 12):
        bars.show_probs(probs, from_step=step)
        assert bars.step_note.isVisible() and bars.step_note.textItem.toPlainText() == f"step {step}"
    (x0, x1), (y0, y1) = bars.plot.viewRange()
    note = bars.step_note.mapRectToView(bars.step_note.boundingRect())
    assert x0 < note.left() and note.right() <= x1 + 1e-9 and y0 - 1e-9 <= note.top() and note.bottom() < y0 + 1.5
    bars.show_probs(probs)
    assert not bars.step_note.isVisible() and bars.plot.titleLabel.text == title and not retitled


def test_a_sampled_curve_counts_its_steps_in_its_corner_without_laying_the_plot_out_again(qtbot):
    """p(y | x_t) computed at some steps of a live run: the count of them changes at every redraw, so it is
    written in the view's top left corner (inside the view, where the curve starts near its prior), not in the
    title (each change of the title laid the plot out again)."""
    plots = on_screen(qtbot, StepPlots(), 900, 260)
    plots.set_steps(100)
    plot, note = plots.plots["prob"], plots.sampled_notes["prob"]
    retitled = []
    set_title = plot.setTitle
    plot.setTitle = lambda *args, **kwargs: (retitled.append(args), set_title(*args, **kwargs))
    title = plot.titleLabel.text
    for known in (3, 7, 12):
        prob = np.full(20 * known + 1, np.nan)
        prob[np.linspace(1, 20 * known, known).astype(int)] = 0.5
        plots.set_curve("prob", prob)
        assert note.isVisible() and note.textItem.toPlainText() == f"sampled at {known} of {20 * known} steps"
    box = note.mapRectToItem(plot.vb, note.boundingRect())
    assert 0 <= box.left() < 10 and 0 <= box.top() < 5 and box.right() < plot.vb.width()
    plots.set_curve("prob", np.linspace(0, 1, 30))  # known at every step: no note
    assert not note.isVisible() and plot.titleLabel.text == title and not retitled
    plots.set_curve("prob", np.array([0.1, np.nan, 0.9]))
    plots.clear_curves()
    assert not note.isVisible()


def test_the_guidance_terms_next_axes_are_drawn_ahead(qtbot):
    """Each new top of the guidance-term plot's y axis (1, 2 or 5 times a power of ten) draws the axis anew: the
    next two are drawn in idle turns ahead of time, so that the change takes a drawing kept."""
    assert [round_top(v) for v in (0.03, 0.05, 0.051, 1.0, 1.5, 3.0, 7.0)] == [0.05, 0.05, 0.1, 1.0, 2.0, 5.0, 10.0]
    plots = on_screen(qtbot, StepPlots(), 900, 260)
    qtbot.wait(50)  # (laid out at its size)
    axis = plots.plots["norm"].getAxis("left")
    laid_out = []
    generate = axis.generateDrawSpecs
    axis.generateDrawSpecs = lambda *args: (laid_out.append(tuple(axis.range)), generate(*args))[1]

    def show_norm(top: float) -> None:
        plots.set_curve("norm", np.array([np.nan, 0.5 * top, top]))
        plots.grab()  # (painted now, as the window would)
        qtbot.waitUntil(lambda: not plots.ahead.busy)

    show_norm(0.04)  # top 0.05: drawn now, and 0.1 and 0.2 ahead
    assert len(laid_out) == 3 and laid_out[0][1] == pytest.approx(0.051)
    laid_out.clear()
    show_norm(0.09)  # 0.1: taken from the drawing kept; 0.5 drawn ahead (0.2 is kept)
    show_norm(0.2)  # 0.2 kept; 1 is the axis before any run, kept too
    assert [top for _, top in laid_out] == pytest.approx([0.51])
    laid_out.clear()
    show_norm(40.0)  # a jump past the drawings ahead is drawn at once
    assert laid_out[0][1] == pytest.approx(51.0)


def test_a_pane_says_when_its_samples_are_out_of_view(qtbot, window):
    view = ((-2.0, 2.0), (-2.5, 2.5))
    assert outside_text(np.zeros((100, 2)), view) == ""
    far = np.column_stack([np.zeros(100), np.linspace(3, 4, 100)])
    assert outside_text(far, view) == "▲ 100 of 100 samples out of view"
    mixed = np.concatenate([np.zeros((90, 2)), far[:10]])
    assert outside_text(mixed, view) == ""  # a few stragglers of the noise are no news
    run_to_end(qtbot, window, steps="5", batch_points=50)
    pane = window.views.point_panes[1]
    assert not pane.outside.isVisible()
    (x0, x1), (y0, y1) = pane.viewRange()
    pane.show_points(np.column_stack([np.full(50, x1 + 1.0), np.zeros(50)]))
    assert pane.outside.isVisible() and pane.outside.textItem.toPlainText() == "▶ 50 of 50 samples out of view"
    pane.getViewBox().setXRange(x0, x1 + 2.0, padding=0)  # scrolled to them: nothing to say
    assert not pane.outside.isVisible()


def test_a_model_switch_leaves_no_stale_curve_in_any_plot(qtbot, window):
    run_to_end(qtbot, window, steps="12", batch_points=200, guidance="both", weight=2.0, scale=2.0,
               class_index=3, twin=True, exact_curves=True)
    guidance = window.guidance
    assert guidance.stack.bands.shape[0] == 12 and len(guidance.twin.curve_data("xt")[0]) == 13
    assert len(guidance.bars.shown) == 8
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.loader.load("toy-scurve")
    assert all(len(window.plots.curve_data(key)[1]) == 0 for key in ("prob", "norm", "noise"))
    assert guidance.stack.bands.shape[0] == 0 and not guidance.stack.fills  # no bands of the old run
    assert len(guidance.twin.curve_data("xt")[0]) == 0 and len(guidance.twin.curve_data("x0")[0]) == 0
    assert len(guidance.bars.shown) == 0 and len(guidance.bars.bars.opts["width"]) == 0
    assert guidance.field.arrows("score_arrows").shape == (0, 2) and guidance.field.arrows("guidance").shape == (0, 2)


def test_empty_plots_span_the_run_the_settings_describe(qtbot, window):
    """Before a run (a model just loaded) the step axes follow the settings, so Start finds them laid out;
    a run's curves keep their own axes whatever the settings then say."""
    plots = window.plots

    def span() -> tuple[float, float]:
        lows, highs = zip(*(plot.viewRange()[0] for plot in plots.plots.values()))
        assert len(set(lows)) == 1 and len(set(highs)) == 1  # the three plots alike
        return lows[0], highs[0]

    window.session.update(sampler="ddpm", steps="300")
    assert span() == pytest.approx((-6, 306))  # 0 … 300, padded 2 %
    window.session.update(sampler="ddim", steps="ddim25")
    assert span() == pytest.approx((-0.5, 25.5))
    run_to_end(qtbot, window, steps="40", batch_points=50)
    window.session.update(steps="300")
    assert span() == pytest.approx((-0.8, 40.8))  # the run on screen keeps its axis
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.loader.load("toy-scurve")
    assert span() == pytest.approx((-6, 306))  # its curves gone, the axes span the next run


def test_the_planes_fit_the_samples_without_zooming_at_every_step(qtbot):
    views = LiveViews()
    qtbot.addWidget(views)
    views.resize(900, 600)
    views.show()
    views.set_points_mode(True)

    def frame(index: int, height: float) -> SimpleNamespace:
        x0 = np.column_stack([np.linspace(-0.5, 0.5, 200), np.full(200, height)])
        return SimpleNamespace(index=index, xt=np.zeros((200, 2)), x0=x0, num_steps=4, timestep=None,
                               noise_level=0.5)

    class Frames(list):
        def frame(self, index: int) -> SimpleNamespace:
            return self[index]

    def half_width() -> float:  # the plane's narrow side, as both linked panes show it
        (x0, x1), (y0, y1) = views.point_panes[1].viewRange()
        return min(x1 - x0, y1 - y0) / 2

    frames = Frames([frame(0, 0.5), frame(1, 5.7), frame(2, 3.2), frame(3, 1.0)])
    views.begin(frames, 4)
    views.new_frame(frames[0])
    assert half_width() == pytest.approx(POINT_RANGE)
    with qtbot.waitSignal(views.point_panes[0].plane_changed):  # the arrow fields follow the plane
        views.new_frame(frames[1])  # x̂0 overshoots under strong guidance: the plane grows to show it
    assert half_width() == pytest.approx(6.0) and views.point_panes[0].viewRange() == views.point_panes[1].viewRange()
    assert not views.point_panes[1].outside.isVisible()
    views.new_frame(frames[2])  # would fit a plane of 4: not worth a zoom
    assert half_width() == pytest.approx(6.0)
    views.new_frame(frames[3])  # half the plane holds them: back to the usual plane
    assert half_width() == pytest.approx(POINT_RANGE)
    views.player.set_index(1)  # scrubbing to a step shows its samples
    assert half_width() == pytest.approx(6.0)
    views.begin(Frames(frames[:1]), 4)  # the next run: the plane stays until its first frame …
    assert half_width() == pytest.approx(6.0)
    views.new_frame(frames[0])  # … whose samples fit the usual plane
    assert half_width() == pytest.approx(POINT_RANGE)
    outliers = np.concatenate([np.zeros((99, 2)), [[40.0, 0.0]]])
    assert extent_for(outliers, POINT_RANGE) == POINT_RANGE  # one far point is not worth zooming out for


def test_before_any_run_the_step_axes_span_whole_steps(qtbot):
    stack, twin = ClassStack(), TwinDistance()
    for widget in (stack, twin):
        qtbot.addWidget(widget)
        widget.resize(300, 200)
        widget.show()
        low, high = widget.plot.viewRange()[0]
        assert low < 0 < IDLE_STEPS < high < IDLE_STEPS + 2  # 0 … 50, not pyqtgraph's empty ±500 × 0.001


def test_the_class_bands_of_a_long_run_are_drawn_through_one_step_per_pixel(qtbot):
    """A 1000-step run's bands are outlined through at most one step per pixel across the plot, first and last
    step kept, each vertex on the exact stacked share of its step; `bands` keeps every step."""
    stack = on_screen(qtbot, ClassStack(), 300, 200)
    stack.set_steps(1000)
    rng = np.random.default_rng(0)
    rows = [rng.dirichlet(np.ones(3)) for _ in range(1001)]
    stack.set_shares(rows)
    assert stack.bands.shape == (1001, 4)
    pixels = int(stack.plot.vb.width())
    assert 100 < pixels < 300
    for k, band in enumerate(stack.fills):
        path = band.path()
        vertices = np.array([(path.elementAt(i).x, path.elementAt(i).y) for i in range(path.elementCount())])
        n = len(vertices) // 2  # the lower edge, left to right, then the upper edge back (and the closing vertex)
        lower, upper = vertices[:n], vertices[n: 2 * n][::-1]
        steps = lower[:, 0].astype(int)
        assert len(steps) <= pixels and steps[0] == 0 and steps[-1] == 1000 and np.all(np.diff(steps) > 0)
        np.testing.assert_allclose(lower[:, 1], stack.bands[steps, k])
        np.testing.assert_array_equal(upper[:, 0], lower[:, 0])
        np.testing.assert_allclose(upper[:, 1], stack.bands[steps, k + 1])
