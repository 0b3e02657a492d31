"""Recording a run's steps as named tracks, and the run file (`.run.npz`) that keeps them."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, sample
from core.fileio import SaveError
from core.recording import MEMORY_BUDGET, Recorder
from core.runs import (
    RUN_SUFFIX,
    RunResult,
    preview_factor,
    read_run,
    read_run_meta,
    run_arrays,
    shrink_images,
    WRITE_PIECE,
    write_npz,
    write_run,
)


class Half(nn.Module):
    def forward(self, x, t, y=None):
        return 0.5 * x


def image_bundle(shape=(3, 8, 8)) -> ModelBundle:
    return ModelBundle("imgs", ModelConfig(architecture="test", data_shape=shape, clip="clip"), Half())


def record(request, bundle, **kwargs) -> tuple[Recorder, list]:
    recorder = Recorder.for_bundle(request, bundle, **kwargs)
    steps = list(sample(request, bundle, diagnostics=True))
    for step in steps:
        recorder.add(step)
    return recorder, steps


def test_a_2d_run_keeps_every_step_as_float16_points_and_curves(gmm):
    req = SamplingRequest(model="toy-gmm", steps="20", batch=50, label=2, guidance=Guidance(kind="cfg", weight=2.0))
    recorder, steps = record(req, gmm)
    result = recorder.result(completed=True)
    assert len(result) == 21 and result.num_steps == 20 and result.completed and result.is_points
    np.testing.assert_array_equal(result.samples, steps[-1].x.numpy())
    xt = result.track("xt")
    assert xt[7].dtype == np.float16 and xt[7].shape == (50, 2)
    np.testing.assert_allclose(xt[7], steps[7].x.numpy(), atol=2e-3)
    assert result.track("x0")[0] is None and result.track("timestep")[0] is None
    assert result.track("timestep")[5] == steps[5].timestep
    assert result.track("prob")[5] == pytest.approx(float(steps[5].log_prob.exp().mean()), rel=1e-6)
    assert result.track("guidance_norm")[5] == pytest.approx(float(steps[5].guidance_norm.mean()), rel=1e-6)
    np.testing.assert_allclose(result.track("noise_level"), [s.noise_level for s in steps], rtol=1e-6)
    elapsed = result.track("elapsed")
    assert all(b >= a for a, b in zip(elapsed, elapsed[1:]))


def test_image_previews_keep_grey_as_one_channel_and_rgb_as_three():
    req = SamplingRequest(model="imgs", steps="2", batch=3)
    grey, _ = record(req, image_bundle((1, 8, 8)))
    colour, steps = record(req, image_bundle((3, 8, 8)))
    assert grey.tracks["xt"][0].shape == (3, 8, 8, 1) and colour.tracks["xt"][0].shape == (3, 8, 8, 3)
    expected = ((steps[1].x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(colour.tracks["xt"][1], expected)


def test_long_image_runs_keep_smaller_previews_within_the_memory_budget():
    req = SamplingRequest(model="imgs", steps="1000", batch=16)
    bundle = image_bundle((3, 256, 256))
    recorder = Recorder.for_bundle(req, bundle)
    recorder.add(next(iter(sample(req, bundle))))
    previews = recorder.tracks["xt"][0]
    assert recorder.stride > 1 and previews.shape[1] == -(-256 // recorder.stride)
    assert 2 * 1001 * previews.nbytes <= MEMORY_BUDGET
    assert 4 * previews.shape[1] <= 512  # a 4 × 4 grid stays near the view's size


def test_only_extras_that_make_previews_share_the_preview_memory():
    """4 images 3×256×256 over 400 steps: x_t and x̂0 fit the memory budget at full size; the guidance views' maps,
    numbers and class shares take none of it, while the unguided twin's two previews do."""
    from core import guidance_views as V

    req = SamplingRequest(model="imgs", steps="400", batch=4)
    bundle = image_bundle((3, 256, 256))
    first = next(iter(sample(req, bundle)))
    strides = {}
    for twin in (False, True):
        recorder = Recorder.for_bundle(req, bundle, extras=V.guidance_tracks(bundle, twin=twin))
        recorder.add(first)
        strides[twin] = recorder.stride
    assert 2 * 401 * 4 * 256 * 256 * 3 <= MEMORY_BUDGET < 4 * 401 * 4 * 256 * 256 * 3
    assert strides == {False: 1, True: 2}


def test_nan_samples_are_reported_not_kept():
    req = SamplingRequest(model="imgs", steps="5", batch=2)
    recorder = Recorder(req, "imgs", "cpu", is_points=False)
    step = next(iter(sample(req, image_bundle())))
    recorder.add(step)
    bad = type(step)(1, 5, 900, torch.full_like(step.x, float("nan")), step.x, None, None, 0.9, 0.0)
    with pytest.raises(FloatingPointError, match="NaN"):
        recorder.add(bad)
    assert len(recorder) == 1
    with pytest.raises(ValueError, match="before its first step"):
        Recorder(req, "imgs", "cpu", is_points=False).result(completed=False)
    lagging = Recorder(req, "imgs", "cpu", is_points=False, lag=True)  # CUDA's way: found once the step completes
    assert lagging.add(step) is None and lagging.add(bad) == 0
    with pytest.raises(FloatingPointError, match="at step 1 of 5"):
        lagging.flush()
    assert len(lagging) == 1


def test_extra_tracks_are_recorded_saved_and_reopened_by_name(gmm, tmp_path):
    req = SamplingRequest(model="toy-gmm", steps="6", batch=5, label=1, guidance=Guidance(kind="cfg", weight=1.0))
    extras = {"cfg_points": lambda step, rec: None if step.cfg_term is None else rec.preview(step.cfg_term),
              "index_squared": lambda step, rec: step.index ** 2}
    recorder, steps = record(req, gmm, extras=extras)
    result = recorder.result(completed=True)
    path = write_run(tmp_path / f"a{RUN_SUFFIX}", result)
    back = read_run(path)
    assert back.track("cfg_points")[0] is None
    np.testing.assert_array_equal(back.track("cfg_points")[3], steps[3].cfg_term.numpy().astype(np.float16))
    assert [int(v) for v in back.track("index_squared")] == [k * k for k in range(7)]


def test_the_run_file_gives_back_the_run(gmm, tmp_path):
    req = SamplingRequest(model="toy-gmm", sampler="ddpm", steps="12", batch=30, label=4,
                          guidance=Guidance(kind="classifier", scale=2.0))
    recorder, _ = record(req, gmm)
    result = recorder.result(completed=False)
    path = write_run(tmp_path / f"run{RUN_SUFFIX}", result)
    back = read_run(path)
    assert back.request == req and back.model_name == "toy-gmm" and back.device == "cpu"
    assert not back.completed and back.num_steps == 12 and len(back) == 13
    assert back.created == pytest.approx(result.created) and back.seconds == pytest.approx(result.seconds, abs=1e-4)
    np.testing.assert_array_equal(back.samples, result.samples)
    for name in ("xt", "x0", "timestep", "prob", "guidance_norm", "noise_level"):
        for a, b in zip(result.track(name), back.track(name)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(np.asarray(b, np.float64), np.asarray(a, np.float64), rtol=1e-6)
    with np.load(path) as data:  # the keys the CLI has always written are there too
        np.testing.assert_array_equal(data["labels"], np.full(30, 4))
        assert json.loads(str(data["meta"]))["request"] == req.to_dict()
    assert read_run_meta(path)["model"] == "toy-gmm"
    unconditional = RunResult(req.replace(label=None, guidance=Guidance()), "toy-gmm", "cpu", 0.0, result.samples)
    with np.load(write_run(tmp_path / f"free{RUN_SUFFIX}", unconditional)) as data:
        assert "labels" not in data.files  # as the CLI: labels only where the run had targets


def test_the_run_file_is_numpys_npz_written_a_piece_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"meta": np.array('{"é": 1}'),  # 0-d text stays 0-d
              "track/xt": rng.standard_normal((3, WRITE_PIECE // 3 + 7)).astype(np.float16),  # several pieces
              "transposed": np.arange(12, dtype=np.int64).reshape(3, 4).T,  # not C-contiguous
              "mask/x0": np.array([True, False, True]), "empty": np.zeros((0, 2), np.uint8)}
    path = tmp_path / "pieces.npz"
    with open(path, "wb") as fh:
        write_npz(fh, arrays)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(arrays)
        for name, array in arrays.items():
            assert data[name].dtype == array.dtype and data[name].shape == array.shape, name
            np.testing.assert_array_equal(data[name], array)
    with zipfile.ZipFile(path) as archive:  # deflated, as np.savez_compressed writes it
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    with pytest.raises(ValueError, match="Python objects"), open(tmp_path / "objects.npz", "wb") as fh:
        write_npz(fh, {"objects": np.array([{}, None], dtype=object)})


def test_a_run_file_of_16_mnist_sized_digits_over_50_steps_stays_under_2_mb(tmp_path):
    req = SamplingRequest(model="imgs", steps="50", batch=16)
    recorder, _ = record(req, image_bundle((1, 32, 32)))
    path = write_run(tmp_path / f"digits{RUN_SUFFIX}", recorder.result(completed=True))
    assert path.stat().st_size <= 2_000_000
    assert read_run(path).track("xt")[10].shape == (16, 32, 32, 1)  # not downscaled


def test_image_previews_beyond_the_file_budget_are_averaged_down():
    stack = np.arange(2 * 1 * 4 * 6 * 1, dtype=np.uint8).reshape(2, 1, 4, 6, 1)
    half = shrink_images(stack, 2)
    assert half.shape == (2, 1, 2, 3, 1)
    assert half[0, 0, 0, 0, 0] == round(np.mean([0, 1, 6, 7]))
    tracks = {"xt": [np.zeros((4, 64, 64, 3), np.uint8)] * 10, "x0": [None] + [np.zeros((4, 64, 64, 3), np.uint8)] * 9,
              "noise_level": [0.5] * 10}
    full = 19 * 4 * 64 * 64 * 3
    assert preview_factor(tracks, budget=full) == 1
    assert preview_factor(tracks, budget=full // 4) == 2 and preview_factor(tracks, budget=full // 4 - 1) == 3
    req = SamplingRequest(model="imgs", steps="9", batch=4)
    result = RunResult(req, "imgs", "cpu", 0.0, np.zeros((4, 3, 64, 64), np.float32), tracks, num_steps=9)
    arrays = run_arrays(result, budget=full // 4)
    assert arrays["track/xt"].shape == (10, 4, 32, 32, 3) and arrays["track/x0"].shape == (10, 4, 32, 32, 3)
    assert arrays["mask/x0"].tolist() == [False] + [True] * 9 and arrays["track/noise_level"].dtype == np.float32


def test_damaged_or_foreign_run_files_are_refused_with_a_sentence(gmm, tmp_path):
    req = SamplingRequest(model="toy-gmm", steps="3", batch=4)
    recorder, _ = record(req, gmm)
    good = write_run(tmp_path / f"good{RUN_SUFFIX}", recorder.result(completed=True))
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "random": bytes(range(256)) * 40,
        "empty": b"",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}{RUN_SUFFIX}"
        path.write_bytes(content)
        with pytest.raises(ValueError):
            read_run(path)
    plain = tmp_path / "plain.npz"
    np.savez(plain, samples=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="holds no run settings"):
        read_run(plain)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array(json.dumps({"model": "x", "request": req.to_dict()})),
             samples=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        read_run(pickled)  # object arrays are never unpickled
    bad_request = tmp_path / "bad.npz"
    np.savez(bad_request, meta=np.array(json.dumps({"model": "x", "request": {"steps": "many"}})),
             samples=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        read_run(bad_request)
    with pytest.raises(ValueError, match="No such file"):
        read_run(tmp_path / "missing.run.npz")
    with zipfile.ZipFile(good) as zf:
        assert all(not info.filename.endswith(".pkl") for info in zf.infolist())


def test_writing_into_a_missing_folder_fails_cleanly(gmm, tmp_path):
    req = SamplingRequest(model="toy-gmm", steps="2", batch=3)
    recorder, _ = record(req, gmm)
    with pytest.raises(SaveError):
        write_run(tmp_path / "nowhere" / f"x{RUN_SUFFIX}", recorder.result(completed=True))
    assert not (tmp_path / "nowhere").exists()


def test_a_run_without_steps_still_saves_its_samples(tmp_path):
    req = SamplingRequest(model="toy-gmm", steps="3", batch=2)
    result = RunResult(req, "toy-gmm", "cpu", 0.1, np.ones((2, 2), np.float32))
    back = read_run(write_run(tmp_path / f"final{RUN_SUFFIX}", result))
    assert len(back) == 0 and back.num_steps == 0
    np.testing.assert_array_equal(back.samples, result.samples)
