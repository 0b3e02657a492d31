"""Trajectory previews (Qt-free) and the sampling worker: coalescing, stop, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import Guidance, SamplingRequest, load_model, sample
from desktop_app.run.trajectory import Trajectory, image_preview

from .conftest import RUN_TIMEOUT_MS, tiny_bundle


def test_image_preview_is_a_grid_capped_in_size():
    x = torch.linspace(-1, 1, 4 * 3 * 8 * 8).reshape(4, 3, 8, 8)
    small = image_preview(x)
    assert small.shape == (2 * 10 + 2, 2 * 10 + 2, 3) and small.dtype == np.uint8
    assert small[2, 2, 0] == 0 and small[-3, -3, 2] == 255  # first pixel is −1, last is +1
    big = image_preview(torch.zeros(16, 1, 256, 256), max_side=256)
    assert max(big.shape[:2]) <= 256 + 8 and big.shape[2] == 3


def test_trajectory_keeps_every_step_and_packs_a_result():
    bundle = load_model("toy-gmm", device="cpu")
    req = SamplingRequest(model="toy-gmm", steps="20", batch=50, label=2, guidance=Guidance(kind="cfg", weight=2.0))
    traj = Trajectory(req, "toy-gmm", "cpu", is_points=True)
    steps = list(sample(req, bundle, diagnostics=True))
    for step in steps:
        traj.add(step)
    result = traj.result(completed=True)
    assert len(result.xt_frames) == len(result.x0_frames) == 21 and result.completed
    assert result.samples.shape == (50, 2) and result.samples.dtype == np.float32
    np.testing.assert_array_equal(result.samples, steps[-1].x.numpy())
    np.testing.assert_allclose(result.xt_frames[7], steps[7].x.numpy(), atol=2e-3)  # float16 storage
    assert np.isnan(result.x0_frames[0]).all()
    assert result.log_prob.shape == (21, 50) and np.isnan(result.log_prob[0]).all()
    np.testing.assert_allclose(result.log_prob[5], steps[5].log_prob.numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.noise_level, [s.noise_level for s in steps], rtol=1e-6)
    prob, norm, noise = traj.curves()
    assert prob[3] == pytest.approx(float(steps[3].log_prob.exp().mean()), rel=1e-6)
    assert norm[3] == pytest.approx(float(steps[3].guidance_norm.mean()), rel=1e-6)


def test_nan_samples_are_reported_not_kept():
    req = SamplingRequest(model="tiny", steps="5", batch=2)
    traj = Trajectory(req, "tiny", "cpu", is_points=False)
    step = next(iter(sample(req, tiny_bundle())))
    traj.add(step)
    bad = type(step)(1, 5, 900, torch.full_like(step.x, float("nan")), step.x, None, None, 0.9, 0.0)
    with pytest.raises(FloatingPointError, match="NaN"):
        traj.add(bad)
    assert len(traj) == 1


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
    assert not result.completed and 1 <= len(result.xt_frames) < 201


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


def test_long_image_runs_keep_smaller_previews():
    req = SamplingRequest(model="tiny", steps="1000", batch=16)
    bundle = tiny_bundle((3, 256, 256))
    traj = Trajectory(req, "tiny", "cpu", is_points=False)
    traj.add(next(iter(sample(req, bundle))))
    side = max(traj.xt[0].shape[:2])
    assert side <= traj.max_side + 8 and 2 * 1001 * traj.xt[0].nbytes <= 768 * 2**20
    assert traj.max_side < 512


def test_error_messages_are_readable():
    from desktop_app.tasks import describe_error

    assert describe_error(ValueError("Bad steps 'x'."), "Sampling failed: ") == "Sampling failed: Bad steps 'x'."
    oom = describe_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"))
    assert oom.startswith("Out of memory. Try a smaller batch") and "Tried to allocate 2 GiB" in oom
    assert "more" not in oom
    assert describe_error(KeyError("x")) == "KeyError: 'x'"
