"""Frames of a run (Qt-free) and the sampling worker: coalescing, stop, errors."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from core import SamplingRequest, load_model, sample
from core.recording import Recorder
from desktop_app.run.trajectory import Frames

from .conftest import RUN_TIMEOUT_MS, tiny_bundle


def test_frames_of_an_image_run_are_grids_of_the_recorded_previews():
    req = SamplingRequest(model="tiny", steps="3", batch=4)
    recorder = Recorder(req, "tiny", "cpu", is_points=False)
    for step in sample(req, tiny_bundle((1, 8, 8))):
        recorder.add(step)
    frames = Frames(recorder)
    first = frames.frame(0)
    assert first.xt.shape == (2 * 10 + 2, 2 * 10 + 2, 3) and first.x0 is None and first.timestep is None
    previews = recorder.tracks["xt"][2]  # (4, 8, 8, 1): grey kept as one channel
    assert previews.shape == (4, 8, 8, 1)
    grid = frames.frame(2).xt
    np.testing.assert_array_equal(grid[2:10, 12:20], np.repeat(previews[1], 3, axis=-1))  # sample 1: top right
    assert (grid[:2] == 0).all() and (grid[:, 10:12] == 0).all()  # black gaps between samples
    prob, norm, noise = frames.curves()
    assert np.isnan(prob).all() and np.isnan(norm).all() and noise[0] == 1.0 and len(noise) == 4


def test_frames_coalesce_when_the_gui_is_busy(qtbot):
    from desktop_app.run.worker import SamplingWorker

    req = SamplingRequest(model="tiny", steps="30", batch=4)
    worker = SamplingWorker(req, tiny_bundle())
    taken = []
    worker.frame_ready.connect(lambda: taken.append(worker.take_frame()))
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS) as finished:
        worker.start()
        assert worker.wait(30)  # the GUI thread is blocked here: no frame can be taken meanwhile
        assert len(worker.trajectory) == 31 and worker.frames_posted == 1
    assert finished.args[0].completed
    assert [f.index for f in taken] == [30]  # only the newest frame reached the GUI


def test_stop_ends_the_run_early_with_an_incomplete_result(qtbot):
    from desktop_app.run.worker import SamplingWorker

    req = SamplingRequest(model="tiny", steps="200", batch=4)
    worker = SamplingWorker(req, tiny_bundle(delay=0.01))
    worker.frame_ready.connect(worker.stop)
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS) as finished:
        worker.start()
    result = finished.args[0]
    assert not result.completed and 1 <= len(result) < 201 and result.num_steps == 200


def test_engine_errors_become_a_failed_signal(qtbot):
    from desktop_app.run.worker import SamplingWorker

    class Exploding(torch.nn.Module):
        def forward(self, x, t, y=None):
            raise RuntimeError("the network blew up")

    bundle = tiny_bundle()
    bundle.model = Exploding()
    worker = SamplingWorker(SamplingRequest(model="tiny", steps="5"), bundle)
    with qtbot.waitSignal(worker.failed, timeout=RUN_TIMEOUT_MS) as failed:
        worker.start()
    assert "the network blew up" in failed.args[0]


def test_error_messages_are_readable():
    from desktop_app.tasks import describe_error

    assert describe_error(ValueError("Bad steps 'x'."), "Sampling failed: ") == "Sampling failed: Bad steps 'x'."
    oom = describe_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"))
    assert oom.startswith("Out of memory. Try a smaller batch") and "Tried to allocate 2 GiB" in oom
    assert "more" not in oom
    assert describe_error(KeyError("x")) == "KeyError: 'x'"


class SlowClassifier(torch.nn.Module):
    """A classifier that takes `delay` seconds per pass: far more than the 3 % a run grants it."""

    def __init__(self, inner: torch.nn.Module, delay: float):
        super().__init__()
        self.inner, self.delay = inner, delay

    def forward(self, x, t):
        time.sleep(self.delay)
        return self.inner(x, t)


def run_worker(qtbot, worker):
    worker.frame_ready.connect(worker.take_frame)
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS) as finished:
        worker.start()
    return finished.args[0]


def test_costly_curves_are_sampled_unless_exact_curves_are_asked_for(qtbot):
    from desktop_app.run.worker import SamplingWorker

    bundle = load_model("toy-gmm", device="cpu")
    bundle.classifier = SlowClassifier(bundle.classifier, 0.05)
    req = SamplingRequest(model="toy-gmm", steps="30", batch=20, label=1)
    budgeted = run_worker(qtbot, SamplingWorker(req, bundle))
    # The first pass measures 50 ms; one more in between would need ~5 s of run to stay within 3 %.
    prob = budgeted.tracks["prob"]
    assert [k for k, p in enumerate(prob) if p is not None] == [1, 30]
    exact = run_worker(qtbot, SamplingWorker(req, bundle, exact_curves=True))
    assert all(p is not None for p in exact.tracks["prob"][1:])
    assert exact.tracks["prob"][1] == pytest.approx(prob[1], rel=1e-6)
    np.testing.assert_array_equal(exact.samples, budgeted.samples)


def test_the_frame_the_gui_will_paint_is_predicted_from_its_rhythm():
    from desktop_app.run.worker import frame_will_show

    interval = 0.033
    # Slow steps: the GUI is ready long before each frame arrives and paints every one.
    assert frame_will_show(10.0, 0.2, ready_at=9.0, pending=False, interval=interval)
    # Fast steps, the GUI idle but throttled: only the step whose frame is newest when it is ready.
    assert not frame_will_show(10.0, 0.001, ready_at=10.0105, pending=False, interval=interval)
    assert frame_will_show(10.0, 0.001, ready_at=10.0015, pending=False, interval=interval)
    # A frame is waiting: the GUI takes the newest at ready_at; if that comes before this step ends,
    # it waits another interval.
    assert frame_will_show(10.0, 0.001, ready_at=10.0012, pending=True, interval=interval)
    assert not frame_will_show(10.0, 0.001, ready_at=10.003, pending=True, interval=interval)
    assert not frame_will_show(10.0, 0.001, ready_at=10.0005, pending=True, interval=interval)
    assert not frame_will_show(10.0, 0.02, ready_at=10.01, pending=True, interval=interval)
    assert frame_will_show(10.0, 0.03, ready_at=10.01, pending=True, interval=interval)


def test_work_submitted_beside_a_run_is_done_on_its_thread_between_steps(qtbot):
    """The GUI's side work (an arrow field) runs on the sampling thread between two steps, while the run is
    held too; once the run has ended, submit says no (the caller then runs it elsewhere)."""
    import threading

    from desktop_app.run.worker import SamplingWorker

    worker = SamplingWorker(SamplingRequest(model="tiny", steps="40", batch=4), tiny_bundle((2,), delay=0.002))
    done: list[tuple[int, int]] = []  # (thread, steps recorded) at each job

    def job():
        done.append((threading.get_ident(), len(worker.recorder)))
        return len(done)

    worker.pause()
    worker.frame_ready.connect(worker.take_frame)
    try:
        with qtbot.waitSignal(worker.held, timeout=RUN_TIMEOUT_MS):
            worker.start()
        held = worker.held_at
        assert worker.submit(job).result(timeout=10) == 1  # done while held, after step `held`
        with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
            worker.resume()
            for _ in range(5):
                answer = worker.submit(job)
                if answer is None:
                    break
                answer.result(timeout=10)
    finally:
        worker.stop()
    sampler = {thread for thread, _ in done}
    assert len(sampler) == 1 and sampler != {threading.get_ident()}  # one thread, not the GUI's
    assert done[0][1] == held + 1
    steps = [n for _, n in done]
    assert steps == sorted(steps) and len(done) == 6 and steps[-1] < 41  # in turn, during the run, not at its end
    assert worker.submit(job) is None  # the run has ended


def test_work_still_queued_when_a_run_ends_is_answered_before_the_end(qtbot):
    from desktop_app.run.worker import SamplingWorker

    worker = SamplingWorker(SamplingRequest(model="tiny", steps="3", batch=4), tiny_bundle((2,)))
    order: list[str] = []
    answer = worker.submit(lambda: order.append("job") or 7)  # before the first step: done after it
    worker.finished.connect(lambda _: order.append("finished"))
    with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS):
        worker.start()
    assert answer.result(timeout=1) == 7 and order == ["job", "finished"]


@pytest.mark.parametrize("lag", [False, True])
def test_holds_and_frames_follow_the_recorded_steps_when_the_record_lags_the_sampler(qtbot, lag):
    """On CUDA the recorder completes a step only once the next one is queued (lag); a held run then waits
    after the step it was asked to, with that step's frame published, and the run's record is the same."""
    from desktop_app.run.worker import SamplingWorker

    req = SamplingRequest(model="tiny", steps="12", batch=4, seed=3)
    worker = SamplingWorker(req, tiny_bundle((3, 8, 8)))
    worker.recorder.lag = lag
    shown: list[int] = []
    worker.frame_ready.connect(lambda: shown.append(worker.take_frame().index))
    worker.run_to(5)
    try:
        for action, expected in ((worker.start, 5), (worker.step, 6), (lambda: worker.run_to(9), 9)):
            with qtbot.waitSignal(worker.held, timeout=RUN_TIMEOUT_MS) as held:
                action()
            assert held.args[0] == expected and len(worker.recorder) == expected + 1
            qtbot.waitUntil(lambda: shown and shown[-1] == expected, timeout=RUN_TIMEOUT_MS)  # on screen while held
        with qtbot.waitSignal(worker.finished, timeout=RUN_TIMEOUT_MS) as finished:
            worker.resume()
    finally:
        worker.stop()
    result = finished.args[0]
    assert result.completed and len(result) == 13 and shown[-1] == 12
    reference = Recorder.for_bundle(req, tiny_bundle((3, 8, 8)))
    for step in sample(req, tiny_bundle((3, 8, 8))):
        reference.add(step)
    for k, preview in enumerate(reference.tracks["xt"]):
        np.testing.assert_array_equal(result.track("xt")[k], preview)
    np.testing.assert_array_equal(result.samples, reference.result(True).samples)
