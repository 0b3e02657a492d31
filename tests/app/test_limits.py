"""Limits of the settings, in one place (desktop_app.limits): the panels show them and refuse an
out-of-range entry out loud; reopened runs and the stored settings are checked against the same limits."""
from __future__ import annotations

import json
import sqlite3

import pytest
from PIL import Image, PngImagePlugin
from PySide6.QtCore import Qt

from core import Guidance, SamplingRequest
from core.pngmeta import CHUNK_KEY
from desktop_app import limits
from desktop_app.library.store import DB_NAME
from desktop_app.session import Settings

from .conftest import LOAD_TIMEOUT_MS


def settings_png(path, text: str):
    """A PNG whose Guidance Studio chunk holds `text` verbatim."""
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK_KEY, text)
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


def request_png(path, **changes):
    request = SamplingRequest(model="toy-gmm", guidance=Guidance("cfg", weight=1.0), label=2, batch=10).to_dict()
    request.update(changes)
    return settings_png(path, json.dumps({"model": "toy-gmm", "request": request}))


@pytest.mark.parametrize("changes, message", [
    (dict(seed=2**31), "The seed must be from 0 to 2147483647, not 2147483648."),
    (dict(batch=3_000_000), "The batch of a 2-D model must be from 1 to 100000, not 3000000."),
    (dict(batch=10**9), "The batch of a 2-D model must be from 1 to 100000, not 1000000000."),
    (dict(guidance={"kind": "cfg", "scale": 0.0, "weight": 1000.0, "window": [0, 1]}),
     "The CFG weight w must be from −1.00 to 100.00, not 1000.0."),
    (dict(label=[3] * 10), None),  # fine: a list of one label per sample
    (dict(label=12), "The target class must be from 0 to 7, not 12."),
])
def test_reopening_a_png_checks_every_setting_against_the_panels_limits(window, tmp_path, changes, message):
    window.session.update(seed=5, weight=2.0)
    before = window.session.settings
    ok = window.results.open_file(request_png(tmp_path / "run.png", **changes))
    if message is None:
        assert ok and window.session.settings.class_index == 3
        return
    assert not ok
    assert window.last_error == f"These settings cannot be used: {message}"
    assert window.session.settings == before
    assert window.sampler_panel.seed.value() == 5 and window.sampler_panel.batch.value() == before.batch_points


@pytest.mark.parametrize("text, message", [
    (json.dumps({"model": "toy-gmm", "request": {"model": "toy-gmm", "guidance": "cfg"}}),
     "The guidance must be a record of kind, scale, weight and window, got 'cfg'."),
    ('{"model": "toy-gmm", "request": ' + "[" * 50_000 + "]" * 50_000 + "}", "damaged (not valid JSON)"),
    (json.dumps({"model": "toy-gmm", "request": {"model": "toy-gmm", "seed": 1e400}}),
     "The seed must be a whole number, got inf."),
    (json.dumps({"model": "toy-gmm", "request": {"model": "toy-gmm", "batch": True}}),
     "The batch size must be a whole number, got True."),
    (json.dumps({"model": ["toy-gmm"], "request": {"model": "toy-gmm"}}), "do not name their model"),
    (json.dumps({"model": "toy-gmm", "request": [1, 2]}), "must be a record"),
])
def test_malformed_settings_in_a_png_give_one_readable_message(window, tmp_path, text, message):
    before = window.session.settings
    assert not window.results.open_file(settings_png(tmp_path / "odd.png", text))
    assert message in window.last_error and window.last_error.startswith("The settings embedded in odd.png")
    assert window.session.settings == before


def test_reopening_a_library_run_outside_the_limits_changes_nothing(window, qtbot):
    library = window.results.library
    entry = library.add("toy-gmm", SamplingRequest(model="toy-gmm", batch=1, seed=0))
    big = dict(SamplingRequest(model="toy-gmm", batch=3_000_000, seed=1).to_dict())
    with sqlite3.connect(library.folder / DB_NAME) as db:
        db.execute("UPDATE runs SET settings = ? WHERE id = ?", (json.dumps(big), entry.id))
    gallery = window.results.gallery
    gallery.refresh()
    gallery.select_ids([entry.id])
    before = window.session.settings
    qtbot.mouseClick(gallery.reopen_button, Qt.MouseButton.LeftButton)
    assert window.last_error == ("These settings cannot be used: The batch of a 2-D model must be from 1 to 100000, "
                                 "not 3000000.")
    assert window.session.settings == before


def test_stored_settings_out_of_range_fall_back_with_a_status_note(qtbot, settings):
    from desktop_app.main_window import MainWindow

    stored = Settings(seed=7, weight=3.0).to_dict() | {"seed": 2**31, "batch_points": 3_000_000_000,
                                                        "eta": "nan", "guidance": ["cfg"], "scale": 2.5}
    settings.setValue("session", json.dumps(stored))
    win = MainWindow(settings=settings)  # raised OverflowError in the sampler panel before
    qtbot.addWidget(win)
    s = win.session.settings
    assert (s.seed, s.batch_points, s.eta, s.guidance, s.scale, s.weight) == (0, 1000, 0.0, "none", 2.5, 3.0)
    with qtbot.waitSignal(win.model_loaded, timeout=LOAD_TIMEOUT_MS):
        win.begin_startup()
    assert win.statusBar().currentMessage() == (
        "Some settings of the last session could not be used and are back to their defaults: eta ('nan'), "
        "seed (2147483648), batch_points (3000000000), guidance (['cfg']).")
    win.close()  # what is saved now loads without a note
    assert Settings.parse(json.loads(settings.value("session")))[1] == []


def test_unreadable_stored_settings_are_named_too():
    assert Settings.parse("[" * 10) == (Settings(), ["all (not a record: '[[[[[[[[[[')"])
    assert Settings.parse({"window_start": 0.5, "window_end": 0.2})[1] == ["window (0.5, 0.2)"]


def type_into(qtbot, box, text: str) -> None:
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_an_out_of_range_entry_is_refused_out_loud_not_clamped(window, qtbot):
    panel = window.guidance_panel
    window.session.update(guidance="cfg", weight=2.0)
    type_into(qtbot, panel.weight, "1000")
    assert window.session.settings.weight == 2.0 and panel.weight.value() == 2.0
    assert panel.note.isVisible() and panel.note.text() == "The CFG weight w must be from −1.00 to 100.00, not 1000."
    type_into(qtbot, panel.weight, "7")  # a good entry counts and clears the note
    assert window.session.settings.weight == 7.0 and not panel.note.isVisible()
    sampler = window.sampler_panel
    type_into(qtbot, sampler.seed, "12345678901234567890")
    assert window.session.settings.seed == 0 and sampler.seed.value() == 0
    assert sampler.note.text() == "The seed must be from 0 to 2147483647, not 12345678901234567890."


def test_limits_are_stated_in_the_tooltips(window):
    window.session.update(guidance="both")
    assert window.guidance_panel.weight.toolTip().endswith("(range −1.00 to 100.00)")
    assert window.guidance_panel.gamma.toolTip().endswith("(range 0.00 to 101.00)")
    assert window.guidance_panel.scale.toolTip().endswith("(range 0.00 to 1000.00)")
    sampler = window.sampler_panel
    assert sampler.seed.toolTip().endswith("(range 0 to 2147483647)") and sampler.seed.maximum() == limits.SEED.high
    assert sampler.batch.toolTip().endswith("(range 1 to 100000)") and sampler.batch.maximum() == 100_000


def test_the_steps_box_takes_exactly_what_is_typed(window, qtbot):
    steps = window.sampler_panel.steps
    steps.setFocus()
    steps.lineEdit().selectAll()
    qtbot.keyClicks(steps.lineEdit(), "1")  # used to autocomplete to "100"
    assert steps.currentText() == "1" and window.session.settings.steps == "1"
    qtbot.keyClick(steps.lineEdit(), Qt.Key.Key_Return)
    assert steps.currentText() == "1" and window.session.settings.steps == "1"
    assert steps.count() == 8  # nothing typed is added to the presets


@pytest.mark.parametrize("steps, message", [
    ("5000", "Bad respacing '5000': a section of 1000 timesteps cannot hold 5000 steps."),
    ("10,2000", "Bad respacing '10,2000': a section of 500 timesteps cannot hold 2000 steps."),
])
def test_steps_the_model_cannot_take_are_refused_at_start(window, tmp_path, steps, message):
    """A reopened run's steps (or typed ones) beyond the model's schedule: one message, no run started
    (the worker used to start, fail and print a traceback)."""
    ok = window.results.open_file(request_png(tmp_path / "run.png", steps=steps))
    assert ok and window.sampler_panel.steps.currentText() == steps
    assert not window.start_run()
    assert window.last_error == message and not window.is_running() and window.worker is None


def test_another_tools_png_with_values_beyond_the_limits_uses_the_rest(window, tmp_path):
    from .test_prompt_panel import prompt_bundle

    window.set_bundle(prompt_bundle())
    window.session.update(seed=3, weight=2.0)
    text = "a fox\nSteps: 20, Sampler: DDIM, CFG scale: 1000, Seed: 3000000000, Size: 64x48, Model: x"
    path = tmp_path / "theirs.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert window.results.open_file(path)  # raised OverflowError in the seed box before
    s = window.session.settings
    assert (s.prompt, s.steps, s.seed, s.weight) == ("a fox", "20", 3, 2.0)
    note = window.results.note_box.text()
    assert "seed: The seed must be from 0 to 2147483647, not 3000000000." in note
    assert "weight: The CFG weight w must be from −1.00 to 100.00, not 999.0." in note
