"""Fuzz suite, the app (tests/fuzzing.py): mutated PNG settings, stored session settings and library rows
never stop the app — each is used, refused with one readable line, or (a library row) skipped and
named — and nothing on disk changes. Case counts are sized for CI; bench/fuzz.py runs many more."""
from __future__ import annotations

import json
import random

from desktop_app import limits
from desktop_app.library.gallery import GalleryWidget
from desktop_app.library.store import Library
from desktop_app.session import Settings
from tests import fuzzing

from .conftest import LOAD_TIMEOUT_MS


def test_mutated_pngs_are_reopened_or_refused_readably(tmp_path):
    tally = fuzzing.fuzz_png(tmp_path, 150, seed=0)
    assert tally.failures == [] and tally.outcomes["refused"] > 0 and tally.outcomes["accepted"] > 0


def test_mutated_stored_settings_always_give_usable_settings():
    tally = fuzzing.fuzz_settings(500, seed=0)
    assert tally.failures == [] and tally.outcomes["accepted"] == 500


def test_mutated_library_rows_are_listed_or_skipped_and_the_gallery_fills(qtbot, tmp_path):
    gallery = GalleryWidget(Library(tmp_path / "library"))
    qtbot.addWidget(gallery)
    tally = fuzzing.fuzz_library_rows(tmp_path, 150, seed=0, gallery=gallery)
    assert tally.failures == [] and tally.cases > 100


def test_mutated_sweep_rows_are_listed_or_skipped_and_reopened_or_refused(qtbot, tmp_path):
    """Found by this target: a sweep row the gallery could not caption stopped the window's start."""
    gallery = GalleryWidget(Library(tmp_path / "library"))
    qtbot.addWidget(gallery)
    tally = fuzzing.fuzz_library_groups(tmp_path, 150, seed=0, gallery=gallery)
    assert tally.failures == [] and tally.outcomes["refused"] > 0 and tally.outcomes["accepted"] > 0


def test_the_window_starts_and_reopens_whatever_it_was_given(qtbot, settings, tmp_path):
    """The real window: mutated stored settings at start-up, then mutated PNGs through File › Open."""
    from PIL import Image, PngImagePlugin

    from core.pngmeta import CHUNK_KEY, read_metadata
    from desktop_app.library.pngio import save_result
    from desktop_app.main_window import MainWindow

    base = save_result(fuzzing.points_result(), tmp_path / "base", with_run=False).grid
    record = read_metadata(base)
    stored = Settings(seed=3).to_dict()
    errors = []
    for i in range(6):
        what, changed = fuzzing.mutate_record(stored, random.Random(f"window-{i}"))
        settings.setValue("session", fuzzing.dumps(changed))
        window = MainWindow(settings=settings)  # must not raise, whatever was stored
        qtbot.addWidget(window)
        s = window.session.settings
        assert not [n for n, lim in limits.SETTINGS.items() if lim.problem(getattr(s, n))], what
    window.error_shown.connect(errors.append)
    window.show()
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.begin_startup()
    tally = fuzzing.Tally()
    for i in range(20):
        what, changed = fuzzing.mutate_record(record, random.Random(f"open-{i}"))
        path = tmp_path / f"case{i}.png"
        info = PngImagePlugin.PngInfo()
        info.add_text(CHUNK_KEY, fuzzing.dumps(changed))
        with Image.open(base) as img:
            img.save(path, pnginfo=info)
        before = len(errors)

        def reopen() -> None:
            if not window.results.open_file(path):
                assert len(errors) == before + 1 and "\n" not in errors[-1].strip()
                raise ValueError(errors[-1])
            qtbot.wait(10)

        fuzzing.check_case(tally, f"window png {what}", reopen, path.parent)
    assert tally.failures == [] and tally.cases == 20
    json.dumps(window.session.to_dict())  # what is saved at close stays plain JSON
