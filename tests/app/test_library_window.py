"""The results features inside the real main window: every run recorded, save → reopen PNG (menu and
drag-and-drop), gallery reopen, GIF export. Uses the `window` fixture (toy-gmm loaded)."""
from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence

from core.pngmeta import read_settings

RUN_TIMEOUT_MS = 60_000


def run_once(window, qtbot, **settings):
    """One run with these settings; returns once it has also been recorded in the library."""
    window.session.update(**settings)
    with qtbot.waitSignal(window.results.run_recorded, timeout=RUN_TIMEOUT_MS):
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
            assert window.start_run()
    return done.args[0]


def test_every_finished_run_is_recorded_in_the_library(window, qtbot, tmp_path):
    results = window.results
    assert tmp_path in results.library.folder.parents  # never the real user data folder
    first = run_once(window, qtbot, steps="6", batch_points=200, guidance="cfg", weight=1.0, class_index=2)
    second = run_once(window, qtbot, seed=4)
    entries = results.library.list()
    assert [e.request for e in entries] == [second.request, first.request]
    assert all(e.model == "toy-gmm" and e.completed and e.thumbnail for e in entries)
    assert read_settings(entries[0].image_path) == ("toy-gmm", second.request)
    assert results.gallery.entry_ids() == [e.id for e in entries]


def test_runs_are_saved_off_the_gui_thread_and_listed_in_order(window, qtbot, monkeypatch):
    import threading

    from desktop_app.library.store import Library

    threads = []
    write_files = Library.write_files

    def spy(self, entry_id, result, per_sample=True):
        threads.append(threading.current_thread())
        return write_files(self, entry_id, result, per_sample)

    monkeypatch.setattr(Library, "write_files", spy)
    window.session.update(steps="3", batch_points=30)
    recorded = []
    window.results.run_recorded.connect(recorded.append)
    requests = []
    for seed in (1, 2, 3):  # three runs back to back, each queued for saving as it finishes
        window.session.update(seed=seed)
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
            assert window.start_run()
        requests.append(done.args[0].request)
    qtbot.waitUntil(lambda: len(recorded) == 3, timeout=RUN_TIMEOUT_MS)
    assert threading.main_thread() not in threads and len(threads) == 3
    assert [e.request for e in recorded] == requests
    assert [e.request for e in window.results.library.list()] == requests[::-1]
    assert window.results.gallery.entry_ids() == [e.id for e in recorded[::-1]]
    assert window.results.gallery.count.text() == "3 runs" and window.results.recording() == 0


def test_a_run_still_being_saved_at_close_is_listed(window, qtbot, monkeypatch):
    import time

    from desktop_app.library.store import Library

    write_files = Library.write_files
    monkeypatch.setattr(Library, "write_files",
                        lambda self, *a, **k: (time.sleep(0.3), write_files(self, *a, **k))[1])
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
        window.session.update(steps="3", batch_points=30, seed=77)
        assert window.start_run()
    library = window.results.library
    assert window.results.recording() == 1 and len(library) == 0
    window.close()
    assert [e.request for e in library.list()] == [done.args[0].request]


def test_save_then_open_the_png_restores_every_setting(window, qtbot, tmp_path):
    result = run_once(window, qtbot, steps="5", batch_points=100, guidance="cfg", weight=3.0, class_index=6,
                      seed=12, sampler="ddim", eta=0.3)
    saved = window.results.save_to(tmp_path / "mine.png")
    assert saved is not None and saved.grid == tmp_path / "mine.png"
    window.session.update(seed=1, weight=0.5, class_index=0, steps="50", guidance="none", eta=0.0)
    assert window.session.request() != result.request
    assert window.results.open_file(saved.grid)
    assert window.session.request() == result.request


def test_dropping_a_png_on_the_window_restores_its_settings(window, qtbot, tmp_path):
    result = run_once(window, qtbot, steps="4", batch_points=64, guidance="classifier", scale=2.5, class_index=3,
                      seed=8)
    path = window.results.save_to(tmp_path / "dropped.png").grid
    window.session.update(seed=0, scale=1.0, class_index=1)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    # Qt delivers drag events only while a real drag runs, so hand them to the window's filter directly.
    filter_ = window.results
    assert filter_.eventFilter(window, enter) and enter.isAccepted()
    assert filter_.eventFilter(window, drop) and drop.isAccepted()
    assert window.session.request() == result.request
    other = QMimeData()
    other.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    refused = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, other, Qt.MouseButton.LeftButton,
                              Qt.KeyboardModifier.NoModifier)
    refused.ignore()
    assert not filter_.eventFilter(window, refused) and not refused.isAccepted()


def test_a_foreign_png_is_refused_with_a_message(window, tmp_path):
    plain = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8)).save(plain)
    before = window.session.settings
    assert not window.results.open_file(plain)
    assert "holds no Guidance Studio settings" in window.last_error
    assert window.session.settings == before


def test_gallery_reopen_restores_the_settings_into_the_window(window, qtbot):
    result = run_once(window, qtbot, steps="5", batch_points=50, guidance="cfg", weight=5.0, class_index=7, seed=21)
    window.session.update(seed=2, weight=0.0, class_index=0, steps="20")
    gallery = window.results.gallery
    gallery.select_ids([window.results.last_entry.id])
    qtbot.mouseClick(gallery.reopen_button, Qt.MouseButton.LeftButton)
    assert window.session.request() == result.request


def test_export_gif_and_menu_entries(window, qtbot, tmp_path):
    assert window.results.export_gif_to(tmp_path / "none.gif") is None  # no run yet
    assert "no result yet" in window.last_error
    result = run_once(window, qtbot, steps="7", batch_points=80)
    path = window.results.export_gif_to(tmp_path / "run.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == len(result) == 8
    file_menu = [a.text() for a in window.file_menu.actions()]
    assert "&Save result…" in file_menu and "Open &run or PNG…" in file_menu
    assert window.results.save_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Save)
    assert window.results.dock.toggleViewAction() in window.view_menu.actions()


def test_sweep_window_uses_the_window_settings_and_model(window, qtbot):
    window.session.update(steps="4", batch_points=64, guidance="cfg", weight=1.0, class_index=1)
    window.results.show_sweep()
    sweep = window.results.sweep
    sweep.values.setText("0, 2, 4")
    with qtbot.waitSignal(sweep.sweep_finished, timeout=RUN_TIMEOUT_MS):
        assert sweep.start()
    assert len(sweep.cells) == 3
    firsts = [sweep.cells[0, c].initial for c in range(3)]
    assert all(np.array_equal(f, firsts[0]) for f in firsts)
    assert sweep.cells[0, 2].result.request == window.session.request().replace(
        guidance=window.session.request().guidance.__class__("cfg", 1.0, 4.0))


def test_opening_a_png_of_another_model_loads_it_then_restores_the_settings(window, qtbot, tmp_path):
    result = run_once(window, qtbot, steps="4", batch_points=40, guidance="cfg", weight=2.0, class_index=6, seed=3)
    path = window.results.save_to(tmp_path / "gmm.png").grid
    with qtbot.waitSignal(window.model_loaded, timeout=30_000):
        window.loader.load("toy-scurve")
    assert window.bundle.name == "toy-scurve"
    with qtbot.waitSignal(window.model_loaded, timeout=30_000) as loaded:
        assert window.results.open_file(path)
    assert loaded.args == ["toy-gmm"]
    assert window.session.request() == result.request


def test_settings_are_not_replaced_during_a_run(window, tmp_path, monkeypatch):
    before = window.session.settings
    monkeypatch.setattr(window, "is_running", lambda: True)
    request = window.session.request().replace(seed=99)
    assert not window.results.reopen("toy-gmm", request)
    assert "Stop the current run" in window.last_error and window.session.settings == before


def test_a_run_that_cannot_be_saved_is_reported_and_not_listed(window, qtbot, monkeypatch):
    from core.fileio import SaveError
    from desktop_app.library.store import Library

    def refuse(self, entry_id, result, per_sample=True):
        raise SaveError("Could not save x.png in /full: No space left on device.")

    monkeypatch.setattr(Library, "write_files", refuse)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        window.session.update(steps="3", batch_points=30)
        assert window.start_run()
    qtbot.waitUntil(lambda: window.results.recording() == 0, timeout=RUN_TIMEOUT_MS)
    message = window.statusBar().currentMessage()
    assert message.startswith("Could not record the run in the library: ") and "No space left" in message
    library = window.results.library
    assert len(library) == 0 and window.results.gallery.entry_ids() == []
    assert library._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0  # no row left behind
