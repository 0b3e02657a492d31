"""The compare window: columns per entry, highlighted differing rows, wipe for two, picture files."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from core import Guidance, SamplingRequest  # noqa: E402
from core.runs import RunResult  # noqa: E402
from desktop_app.compare.window import CompareWindow  # noqa: E402
from desktop_app.library.store import Library  # noqa: E402


def image_result(seed: int, weight: float, value: float) -> RunResult:
    req = SamplingRequest(model="imgs", guidance=Guidance(kind="cfg", weight=weight), label=1, seed=seed, batch=1)
    return RunResult(req, "imgs", "cpu", 1.0, np.full((1, 3, 16, 16), value, np.float32))


@pytest.fixture
def window(qtbot):
    w = CompareWindow()
    qtbot.addWidget(w)
    w.show()
    return w


def test_differing_settings_are_highlighted(window, tmp_path):
    lib = Library(tmp_path)
    a = lib.record(image_result(0, 1.0, -1.0), per_sample=False)
    b = lib.record(image_result(0, 4.0, 1.0), per_sample=False)
    c = lib.record(image_result(3, 1.0, 0.0), per_sample=False)
    window.set_entries([a, b])
    assert window.highlighted_rows() == ["guidance.weight"]
    assert window.table.columnCount() == 2 and window.table.rowCount() > 10
    window.set_entries([a, b, c])
    assert window.highlighted_rows() == ["guidance.weight", "seed"]
    window.only_diff.setChecked(True)
    assert window.table.rowCount() == 2
    assert [window.table.item(0, i).text() for i in range(3)] == ["1", "4", "1"]
    assert not window.tabs.isTabEnabled(window.wipe_index)
    unused = image_result(0, 1.0, -1.0)
    unused = type(unused)(unused.request.replace(guidance=Guidance(kind="cfg", scale=9.0, weight=1.0)),
                          "imgs", "cpu", 1.0, unused.samples)
    window.only_diff.setChecked(False)
    window.set_entries([a, lib.record(unused, per_sample=False)])
    assert window.highlighted_rows() == []  # s does not act under classifier-free guidance


def test_wipe_shows_the_first_run_left_of_the_slider(window, tmp_path):
    lib = Library(tmp_path)
    dark = lib.record(image_result(0, 1.0, -1.0), per_sample=False)  # black pixels
    light = lib.record(image_result(0, 2.0, 1.0), per_sample=False)  # white pixels
    window.set_entries([dark, light])
    assert window.tabs.isTabEnabled(window.wipe_index)
    window.wipe.slider.setValue(250)
    out = window.wipe.composite()
    assert out.shape == (20, 20, 3)  # a 16 px sample with the grid's 2 px black border
    assert (out[2:18, :4] == 0).all()  # left of the cut at x = 5: the black run
    assert (out[2:18, 4] == 0).all() and (out[2:18, 5] == 255).all()  # the divider: black, then white
    assert (out[2:18, 6:18] == 255).all()  # right of it: the white run
    window.wipe.slider.setValue(1000)
    assert (window.wipe.composite()[2:18, 2:18] == 0).all()
    assert not window.wipe.picture.pixmap().isNull()


def test_missing_file_falls_back_to_the_thumbnail(window, tmp_path):
    lib = Library(tmp_path)
    a = lib.record(image_result(0, 1.0, 0.5), per_sample=False)
    b = lib.record(image_result(1, 1.0, 0.5), per_sample=False)
    a.image_path.unlink()
    window.set_entries([a, b])
    notes = [lbl.text() for lbl in window.columns.findChildren(type(window.empty))]
    assert any("saved file missing" in t for t in notes)


def test_shows_a_picture_file_in_its_own_tab(window, tmp_path):
    plot = tmp_path / "tradeoff.png"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(plot)
    window.show_image_file(plot, "Trade-off")
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Trade-off"
    label = window.picture_tabs[plot]
    assert label.source().width() == 300
    window.show_image_file(plot)  # refreshing does not add a second tab
    assert window.tabs.count() == 3
    with pytest.raises(ValueError, match="Cannot read the picture"):
        window.show_image_file(tmp_path / "nothing.png")


def recorded(model_steps: str, weight: float, seed: int = 0, batch: int = 300) -> RunResult:
    from core import load_model, sample
    from core.recording import Recorder

    bundle = load_model("toy-gmm", device="cpu")
    request = SamplingRequest(model="toy-gmm", steps=model_steps, guidance=Guidance(kind="cfg", weight=weight),
                              label=2, seed=seed, batch=batch)
    recorder = Recorder.for_bundle(request, bundle)
    for step in sample(request, bundle):
        recorder.add(step)
    return recorder.result(completed=True)


def test_one_scrubber_shows_both_runs_at_the_same_step_on_shared_axes(window, qtbot, tmp_path):
    from desktop_app.run.trajectory import Frames

    lib = Library(tmp_path)
    a, b = recorded("30", 0.0), recorded("30", 3.0)
    entries = [lib.record(a), lib.record(b)]
    with qtbot.waitSignal(window.steps_ready, timeout=30_000):
        window.set_entries(entries)
    assert window.summary.text() == "Differs: CFG weight w: 0 → 3"
    player = window.player
    assert player.count() == 31 and player.slider.isEnabled()
    player.set_index(20)
    for view, result in zip(window.views, (a, b)):
        assert view.showing_points  # a scatter plot, not a raster thumbnail
        np.testing.assert_array_equal(view.points.points, Frames(result).frame(20).xt)
    first, second = (v.points for v in window.views)
    np.testing.assert_allclose(first.getViewBox().viewRange(), second.getViewBox().viewRange())  # the same axes
    second.getViewBox().setXRange(-1, 0.5, padding=0)  # zooming one zooms the other
    np.testing.assert_allclose(first.getViewBox().viewRange()[0], [-1, 0.5])
    wipe = window.wipe
    assert wipe.showing_points and wipe.composite() is None
    wipe.slider.setValue(500)  # the plane's left half from run 1, right half from run 2
    left, right = wipe.points.cloud._groups, wipe.cloud_b._groups
    a20, b20 = Frames(a).frame(20).xt, Frames(b).frame(20).xt
    assert sum(len(p) for *_, p in left) == int((a20[:, 0] < 0).sum())
    assert sum(len(p) for *_, p in right) == int((b20[:, 0] >= 0).sum())
    assert wipe.divider.value() == 0.0 and wipe.divider.pen.color().getRgb()[:3] == (70, 70, 70)
    window.view.setCurrentIndex(window.view.findData("x0"))
    np.testing.assert_array_equal(window.views[1].points.points, Frames(b).frame(20).x0)


def test_runs_of_different_lengths_share_the_scrubber_by_noise_level(window, qtbot, tmp_path):
    from core.runs import NOISE
    from desktop_app.run.trajectory import Frames

    lib = Library(tmp_path)
    short, long = recorded("10", 1.0, batch=50), recorded("40", 1.0, batch=50)
    with qtbot.waitSignal(window.steps_ready, timeout=30_000):
        window.set_entries([lib.record(short), lib.record(long)])
    assert window.player.count() == 41 and "steps: 10 → 40" in window.summary.text()
    window.player.set_index(20)
    noise = np.asarray(short.track(NOISE))
    k = int(np.abs(noise - long.track(NOISE)[20]).argmin())
    np.testing.assert_array_equal(window.views[0].points.points, Frames(short).frame(k).xt)
    np.testing.assert_array_equal(window.views[1].points.points, Frames(long).frame(20).xt)
    assert 0 < k < 10
