"""Jobs off the GUI thread: sampling keeps one thread across runs (CUDA's per-thread caches survive), other
jobs get a thread each; a failing job does not end its lane; quitting lets the kept threads end."""
from __future__ import annotations

import itertools
import os
import threading

import pytest

from desktop_app.tasks import ThreadedJob, close_lanes

from .conftest import RUN_TIMEOUT_MS


class Job(ThreadedJob):
    def __init__(self, name: str, lane: bool, fail: bool = False, gate: threading.Event | None = None):
        super().__init__(name, lane=lane)
        self.fail, self.gate, self.thread = fail, gate, None

    def _run(self) -> None:
        self.thread = threading.current_thread()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RuntimeError("this job fails")


def run(job: Job) -> Job:
    job.start()
    assert job.wait(10) and not job.is_running()
    return job


def test_jobs_of_a_lane_share_one_kept_thread_and_others_get_their_own():
    first, failing = run(Job("test-lane", True)), run(Job("test-lane", True, fail=True))
    second = run(Job("test-lane", True))
    assert first.thread is failing.thread is second.thread  # the failure did not end the lane
    assert first.thread.name.startswith("test-lane") and first.thread.is_alive()  # kept, waiting for the next job
    own = [run(Job("test-own", False)) for _ in range(2)]
    assert own[0].thread is not own[1].thread and first.thread not in (own[0].thread, own[1].thread)


def test_a_job_waits_its_turn_and_says_it_is_running_until_it_ends():
    gate = threading.Event()
    held, queued = Job("test-turns", True, gate=gate), Job("test-turns", True)
    assert queued.wait(0) and not queued.is_running()  # never started: nothing to wait for
    held.start()
    queued.start()
    assert held.is_running() and queued.is_running() and not queued.wait(0.2)
    gate.set()
    assert queued.wait(10) and held.wait(0) and queued.thread is held.thread


def test_closing_the_lanes_ends_their_threads_and_a_later_job_starts_a_new_one():
    first = run(Job("test-close", True))
    close_lanes()
    first.thread.join(10)
    assert not first.thread.is_alive()
    later = run(Job("test-close", True))
    assert later.thread is not first.thread and later.thread.name.startswith("test-close") and later.thread.is_alive()


def test_the_windows_runs_sample_on_one_kept_thread(qtbot, window):
    idents = []
    for _ in range(2):
        window.session.update(steps="3", batch_points=20)
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
            window.start_run()
        idents.append(window.worker.ran_on)
    assert idents[0] is idents[1] and idents[0].name.startswith("sampling")


def test_turns_run_each_part_in_a_turn_of_its_own_after_the_turns_they_follow(qtbot):
    """A frame's pane paints go first, then the throttled redraws: parts of Turns made `after` others wait
    until those have none left, though their own timer started first."""
    from PySide6.QtCore import QTimer

    from desktop_app.tasks import Turns

    order: list[str] = []
    panes = Turns()
    redraws = Turns(after=panes)
    redraws.add(lambda: order.append("curves"), lambda: order.append("progress"))
    panes.add(lambda: order.append("x_t"), lambda: order.append("x0"))
    ticks = QTimer()
    ticks.timeout.connect(lambda: order.append("tick"))
    ticks.start(0)  # a 0 ms timer of the event loop's own: it runs between the parts, not only after them
    qtbot.waitUntil(lambda: "progress" in order, timeout=RUN_TIMEOUT_MS)
    ticks.stop()
    parts = [name for name in order if name != "tick"]
    assert parts == ["x_t", "x0", "curves", "progress"]
    assert all(order.index(a) + 1 < order.index(b) for a, b in itertools.pairwise(parts))  # a tick between


def test_turns_after_others_wait_for_the_repaint_their_last_part_posted(qtbot):
    """The redraws of a frame start after its x̂0 pane is painted, not in the turn that let that paint in:
    there the two together held the window (a late tick of bench/ui_latency.py). As in the app, the panes'
    parts are added first, so their last part and the redraws' first are due in one pass over the timers."""
    from PySide6.QtWidgets import QWidget

    from desktop_app.tasks import Turns

    order: list[str] = []

    class Pane(QWidget):
        def paintEvent(self, event):
            if "x0" in order:  # (not a paint of its showing)
                order.append("x0 painted")

    pane = Pane()
    pane.resize(40, 40)
    pane.show()
    qtbot.waitExposed(pane)
    panes = Turns()
    redraws = Turns(after=panes)
    panes.add(lambda: order.append("x_t"), lambda: (order.append("x0"), pane.update()))
    redraws.add(lambda: order.append("curves"))
    qtbot.waitUntil(lambda: "curves" in order and not redraws.busy, timeout=RUN_TIMEOUT_MS)
    assert order == ["x_t", "x0", "x0 painted", "curves"]
    assert not panes.busy and not panes


def test_parts_of_different_turns_never_share_a_pass_of_the_event_loop(qtbot):
    """Every Turns takes its turns from one timer: a live frame's redraws and the x_t pane's arrows (two Turns
    that follow the panes') alternate with the loop's own timers instead of running, and then repainting, in
    one pass."""
    from PySide6.QtCore import QTimer

    from desktop_app.tasks import Turns

    order: list[str] = []
    panes = Turns()
    redraws, arrows = Turns(after=panes), Turns(after=panes)
    panes.add(lambda: order.append("x_t"), lambda: order.append("x0"))
    redraws.add(lambda: order.append("curves"), lambda: order.append("progress"))
    arrows.add(lambda: order.append("arrows"))
    ticks = QTimer()
    ticks.timeout.connect(lambda: order.append("tick"))
    ticks.start(0)
    qtbot.waitUntil(lambda: not (panes.busy or redraws.busy or arrows.busy), timeout=RUN_TIMEOUT_MS)
    ticks.stop()
    parts = [name for name in order if name != "tick"]
    assert parts[:2] == ["x_t", "x0"] and sorted(parts[2:]) == ["arrows", "curves", "progress"]
    assert parts.index("curves") < parts.index("progress")
    assert all(order.index(a) + 1 < order.index(b) for a, b in itertools.pairwise(parts))  # a tick between


def test_the_pass_that_repaints_after_a_part_runs_no_other_part(qtbot):
    """A part's repaint comes in the next pass of the event loop, before its timers: no part runs in that pass, so
    the loop's timers are seen to between the repaint and the next part (together they made 18-19 ms gaps)."""
    from PySide6.QtCore import QAbstractEventDispatcher
    from PySide6.QtWidgets import QWidget

    from desktop_app.tasks import Turns

    order: list[str] = []

    class Pane(QWidget):
        def paintEvent(self, event):
            order.append("paint")

    pane = Pane()
    qtbot.addWidget(pane)
    pane.show()
    qtbot.waitExposed(pane)
    qtbot.wait(20)
    dispatcher = QAbstractEventDispatcher.instance()
    mark_pass = lambda: order.append("pass")  # noqa: E731 — disconnected below
    dispatcher.awake.connect(mark_pass)
    turns, others = Turns(), Turns()
    turns.add(lambda: (order.append("frame"), pane.update()))
    others.add(lambda: order.append("curves"))
    qtbot.waitUntil(lambda: not (turns.busy or others.busy), timeout=RUN_TIMEOUT_MS)
    dispatcher.awake.disconnect(mark_pass)
    after = order[order.index("frame"):]
    painted, curves = after.index("paint"), after.index("curves")
    assert painted < curves and "pass" in after[painted:curves]  # a pass began between them


def test_a_part_may_give_parts_to_other_turns(qtbot):
    """A live frame, taken in a turn, gives the panes their paint turns: they run, and what follows them after."""
    from desktop_app.tasks import Turns

    order: list[str] = []
    frames, panes = Turns(), Turns()
    redraws = Turns(after=panes)
    frames.add(lambda: (order.append("frame"), panes.add(lambda: order.append("x_t")),
                        redraws.add(lambda: order.append("curves"))))
    qtbot.waitUntil(lambda: "curves" in order, timeout=RUN_TIMEOUT_MS)
    assert order == ["frame", "x_t", "curves"] and not (frames.busy or panes.busy or redraws.busy)


def test_turns_after_several_wait_for_all_of_them(qtbot):
    """A live frame waits for the panes' paints and the redraws of the frame before: `after` may name several
    Turns, and a part waits until none of them is busy, though it was first in line."""
    from desktop_app.tasks import Turns

    order: list[str] = []
    panes, redraws = Turns(), Turns()
    frames = Turns(after=(panes, redraws))
    frames.add(lambda: order.append("frame"))
    panes.add(lambda: order.append("x_t"))
    redraws.add(lambda: order.append("curves"), lambda: order.append("progress"))
    qtbot.waitUntil(lambda: "frame" in order, timeout=RUN_TIMEOUT_MS)
    assert order[-1] == "frame" and sorted(order[:-1]) == ["curves", "progress", "x_t"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="lists threads through Linux's /proc")
def test_large_fills_are_painted_on_the_gui_thread(qapp):
    """Qt's raster engine would hand a fill this tall to its pool of threads and wait for them, which then wait
    for a core the sampler holds; the app keeps fills on the GUI thread (desktop_app/__init__.py)."""
    from PySide6.QtGui import QColor, QImage, QPainter

    import desktop_app  # noqa: F401 — what sets it up

    def pooled() -> int:
        names = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    names.append(f.read().strip())
            except OSError:  # (a thread that has just ended)
                pass
        return names.count("Thread (pooled)")

    before = pooled()
    image = QImage(800, 800, QImage.Format.Format_ARGB32_Premultiplied)
    for _ in range(3):
        painter = QPainter(image)
        painter.fillRect(0, 0, 800, 800, QColor(10, 20, 30, 128))
        painter.drawImage(0, 0, image.copy())
        painter.end()
    assert pooled() == before
