"""The gallery widget over a real library: thumbnails, filter, reopen, compare, delete."""
from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from core import Guidance, SamplingRequest  # noqa: E402
from core.runs import RunResult  # noqa: E402
from desktop_app.library.gallery import ALL_MODELS, GalleryWidget  # noqa: E402
from desktop_app.library.store import Library  # noqa: E402


def points_result(seed: int, weight: float, model: str = "toy-gmm") -> RunResult:
    req = SamplingRequest(model=model, guidance=Guidance(kind="cfg", weight=weight), label=2, seed=seed, batch=50)
    pts = np.random.default_rng(seed).normal(0, 0.5, (50, 2)).astype(np.float32)
    return RunResult(req, model, "cpu", 0.5, pts)


@pytest.fixture
def gallery(qtbot, tmp_path):
    lib = Library(tmp_path)
    lib.record(points_result(0, 1.0))
    lib.record(points_result(1, 3.0))
    lib.record(points_result(2, 0.0, model="toy-other"))
    widget = GalleryWidget(lib)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_lists_every_entry_with_a_thumbnail_and_filters_by_model(gallery):
    lib = gallery.library
    assert gallery.entry_ids() == [e.id for e in lib.list()] and len(gallery.entry_ids()) == 3
    icon = gallery.model.item(0).icon()
    assert not icon.isNull() and not icon.pixmap(64, 64).isNull()
    assert [gallery.filter.itemText(i) for i in range(gallery.filter.count())] == [ALL_MODELS, "toy-gmm", "toy-other"]
    gallery.filter.setCurrentIndex(gallery.filter.findText("toy-other"))
    assert gallery.entry_ids() == [e.id for e in lib.list("toy-other")] and len(gallery.entry_ids()) == 1
    assert gallery.count.text() == "1 run"
    gallery.set_model_filter(None)
    assert len(gallery.entry_ids()) == 3


def test_buttons_follow_the_selection(gallery):
    assert not gallery.reopen_button.isEnabled() and not gallery.compare_button.isEnabled()
    ids = gallery.entry_ids()
    gallery.select_ids(ids[:1])
    assert gallery.reopen_button.isEnabled() and not gallery.compare_button.isEnabled()
    gallery.select_ids(ids[:2])
    assert not gallery.reopen_button.isEnabled() and gallery.compare_button.isEnabled()


def test_reopen_emits_the_stored_settings(gallery, qtbot):
    target = gallery.library.list("toy-gmm")[-1]  # seed 0, w = 1
    gallery.select_ids([target.id])
    with qtbot.waitSignal(gallery.reopen_requested) as blocker:
        qtbot.mouseClick(gallery.reopen_button, Qt.MouseButton.LeftButton)
    (entry,) = blocker.args
    assert entry.id == target.id and entry.model == "toy-gmm" and entry.request == points_result(0, 1.0).request


def test_compare_emits_the_selected_entries(gallery, qtbot):
    ids = gallery.entry_ids()
    gallery.select_ids([ids[0], ids[2]])
    with qtbot.waitSignal(gallery.compare_requested) as blocker:
        gallery.compare_button.click()
    assert sorted(e.id for e in blocker.args[0]) == sorted([ids[0], ids[2]])


def test_delete_asks_then_removes_entries_and_files(gallery, monkeypatch):
    lib = gallery.library
    victim = lib.list()[0]
    gallery.select_ids([victim.id])
    monkeypatch.setattr(GalleryWidget, "confirm", staticmethod(lambda parent, text: False))
    gallery.delete_button.click()
    assert len(lib) == 3 and victim.image_path.exists()
    asked = []
    monkeypatch.setattr(GalleryWidget, "confirm", staticmethod(lambda parent, text: asked.append(text) or True))
    gallery.select_ids([victim.id])
    gallery.delete_button.click()
    assert asked == ["Delete 1 run from the library and 1 saved file?"]
    assert len(lib) == 2 and victim.id not in gallery.entry_ids() and not victim.image_path.exists()


def test_record_adds_a_run_and_keeps_the_filter(gallery):
    gallery.set_model_filter("toy-other")
    entry = gallery.record(points_result(5, 2.0, model="toy-other"))
    assert gallery.model_filter() == "toy-other"
    assert gallery.entry_ids()[0] == entry.id and len(gallery.entry_ids()) == 2


def test_broken_settings_cannot_be_reopened_and_say_why(gallery, qtbot):
    lib = gallery.library
    bad = lib.add("toy-gmm", SamplingRequest(model="toy-gmm"))
    lib._db.execute("UPDATE runs SET settings = ? WHERE id = ?", ('{"model": "toy-gmm", "eta": 3}', bad.id))
    lib._db.commit()
    gallery.refresh()
    gallery.select_ids([bad.id])
    with qtbot.assertNotEmitted(gallery.reopen_requested):
        gallery.reopen_selected()
    assert "η must lie in [0, 1]" in gallery.message.text()


def test_a_new_entry_appears_on_top_only_under_a_matching_filter(gallery):
    lib = gallery.library
    gallery.set_model_filter("toy-gmm")
    before = gallery.entry_ids()
    other = lib.record(points_result(6, 1.0, model="toy-other"))
    gallery.show_entry(other)
    assert gallery.entry_ids() == before and gallery.count.text() == "2 runs"
    mine = lib.record(points_result(7, 1.0))
    gallery.show_entry(mine)
    assert gallery.entry_ids() == [mine.id, *before] and gallery.count.text() == "3 runs"
    fresh = lib.record(points_result(8, 1.0, model="brand-new"))
    gallery.show_entry(fresh)  # a model the filter list lacks: it is added, the filter kept
    assert gallery.filter.findText("brand-new") > 0 and gallery.model_filter() == "toy-gmm"
    gallery.set_model_filter(None)
    assert gallery.entry_ids()[0] == fresh.id and gallery.count.text() == "6 runs"


def test_stopped_runs_wear_a_badge_and_can_be_shown_alone(qtbot, tmp_path):
    lib = Library(tmp_path / "badges")
    done = lib.record(points_result(3, 1.0))
    stopped = lib.record(dataclasses.replace(points_result(4, 1.0), completed=False))
    widget = GalleryWidget(lib)
    qtbot.addWidget(widget)

    def icon_pixels(entry_id: int) -> np.ndarray:
        row = widget.entry_ids().index(entry_id)
        image = widget.model.item(row).icon().pixmap(128, 128).toImage().convertToFormat(QImage.Format.Format_RGB888)
        return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
            :, : 3 * image.width()].reshape(image.height(), image.width(), 3)

    def red_share(pixels: np.ndarray) -> float:
        bottom = pixels[-pixels.shape[0] // 6:].astype(int)
        return float(((bottom[..., 0] > 150) & (bottom[..., 1] < 90) & (bottom[..., 2] < 90)).mean())

    assert red_share(icon_pixels(stopped.id)) > 0.5 and red_share(icon_pixels(done.id)) == 0.0
    assert "(stopped)" in widget.model.item(widget.entry_ids().index(stopped.id)).text()
    widget.set_completed_filter(False)
    assert widget.entry_ids() == [stopped.id] and widget.count.text() == "1 run"
    widget.set_completed_filter(True)
    assert widget.entry_ids() == [done.id]
    widget.show_entry(lib.record(dataclasses.replace(points_result(5, 1.0), completed=False)))
    assert widget.entry_ids() == [done.id]  # a stopped run does not join the finished-only list
    widget.set_completed_filter(None)
    assert len(widget.entry_ids()) == 3
