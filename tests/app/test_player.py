"""Playback: click-to-step, ±1/±10 steps (buttons and keys), speeds and real time, loop, the step label,
and watch mode pacing a fast run."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from core import SamplingRequest
from desktop_app.views.player import PLAY_SECONDS, StepPlayer, step_text

from .conftest import RUN_TIMEOUT_MS, tiny_bundle


@pytest.fixture
def player(qtbot):
    widget = StepPlayer()
    qtbot.addWidget(widget)
    widget.resize(900, 40)
    widget.show()
    widget.set_enabled(True)
    widget.set_count(101)
    return widget


def test_clicking_the_track_goes_to_the_step_clicked(player, qtbot):
    slider = player.slider
    seen = []
    player.index_changed.connect(seen.append)
    x = next(x for x in range(slider.width()) if slider.value_at(x) == 63)
    QTest.mouseClick(slider, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, slider.height() // 2))
    assert player.index() == 63 and seen == [63]  # not a page of 10 towards the click
    x = next(x for x in range(slider.width()) if slider.value_at(x) == 7)
    QTest.mouseClick(slider, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, slider.height() // 2))
    assert player.index() == 7


def test_step_buttons_move_by_one_and_ten_and_pause(player, qtbot):
    player.set_index(50)
    player.play_button.setChecked(True)
    qtbot.mouseClick(player.buttons[1], Qt.MouseButton.LeftButton)
    assert player.index() == 51 and not player.playing
    qtbot.mouseClick(player.buttons[-10], Qt.MouseButton.LeftButton)
    assert player.index() == 41
    qtbot.mouseClick(player.buttons[10], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(player.buttons[-1], Qt.MouseButton.LeftButton)
    assert player.index() == 50
    player.set_index(98)
    player.step_by(10)
    assert player.index() == 100  # clamped at the last step


@pytest.mark.parametrize("label, factor", [("0.25×", 0.25), ("1×", 1.0), ("2×", 2.0), ("8×", 8.0)])
def test_each_speed_plays_the_whole_run_in_its_share_of_five_seconds(player, label, factor):
    player.set_speed(label)
    player.set_index(0)
    player.play_button.setChecked(True)
    player.advance(0.5)
    assert player.index() == int(0.5 * 100 / PLAY_SECONDS * factor)
    player.advance(PLAY_SECONDS / factor)
    assert player.index() == 100 and not player.playing  # stops at the end without Loop


def test_real_time_replays_each_step_when_it_was_computed(player):
    player.set_count(5)
    player.set_elapsed(np.array([0.0, 0.1, 0.2, 1.0, 1.1]))
    player.set_speed("real time")
    player.set_index(0)
    player.play_button.setChecked(True)
    player.advance(0.15)
    assert player.index() == 1
    player.advance(0.6)  # 0.75 s: still waiting for step 3 (computed at 1.0 s)
    assert player.index() == 2
    player.advance(0.3)
    assert player.index() == 3
    player.set_elapsed(None)  # unknown times: real time falls back to 1×
    player.set_index(0)
    player.play_button.setChecked(False)
    player.play_button.setChecked(True)
    player.advance(PLAY_SECONDS / 4)
    assert player.index() == 1


def test_loop_starts_again_at_step_zero(player):
    player.loop.setChecked(True)
    player.set_index(95)
    player.play_button.setChecked(True)
    player.advance(1.0)
    assert player.index() == 0 and player.playing
    player.advance(0.5)
    assert player.index() == 10


def test_the_label_names_the_step_its_t_and_noise_level():
    assert step_text(12, 50, 759, 0.8312) == "step 12 / 50 · t = 759 · noise √(1−ᾱ) = 0.831"
    assert step_text(0, 50, None, 1.0) == "step 0 / 50 · t = – · noise √(1−ᾱ) = 1.000"


def test_keys_of_the_run_menu_step_the_window_views(window, qtbot):
    window.session.update(steps="40", batch_points=50)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
    views = window.views
    views.player.set_index(20)
    views.setFocus()
    for key, modifier, expected in ((Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier, 21),
                                    (Qt.Key.Key_Left, Qt.KeyboardModifier.NoModifier, 20),
                                    (Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier, 10),
                                    (Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier, 20)):
        QTest.keyClick(views, key, modifier)
        assert views.shown_index == expected
    label = views.step_label.text()
    frame = views.source.frame(20)
    assert label.startswith("step 20 / 40 · t = ") and f"{frame.noise_level:.3f}" in label


def test_watch_mode_paces_a_fast_run_and_leaves_the_waits_out_of_its_time(qtbot, monkeypatch):
    from desktop_app.run.worker import SamplingWorker

    worker = SamplingWorker(SamplingRequest(model="tiny", steps="12", batch=2), tiny_bundle(), pace=4.0)
    waits, excluded = [], []
    monkeypatch.setattr(worker._cancel, "wait", lambda timeout=None: waits.append(timeout) or False)
    monkeypatch.setattr(worker.recorder, "exclude", excluded.append)
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS) as finished:
        worker.start()
    assert finished.args[0].completed
    assert len(waits) == 12 and all(0 < w <= 0.25 for w in waits)  # after every step but the last
    assert len(excluded) == 12  # each wait is left out of the run's recorded time
