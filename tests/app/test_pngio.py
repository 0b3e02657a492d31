"""Saving results as PNG with embedded settings, reading them back, atomic writes, GIF export."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import Guidance, SamplingRequest, load_model, sample
from core.fileio import SaveError
from core.images import to_uint8
from core.pngmeta import CHUNK_KEY, read_metadata, read_settings, write_png
from core.recording import Recorder
from core.runs import RunResult, read_run
from desktop_app.library import pngio
from desktop_app.library.export import export_gif, trajectory_frames
from desktop_app.library.pngio import save_result


def points_run(steps: str = "8", batch: int = 64) -> RunResult:
    """A real toy-gmm run with every step's point cloud kept."""
    request = SamplingRequest(model="toy-gmm", steps=steps, guidance=Guidance(kind="cfg", weight=1.5),
                              label=2, seed=7, batch=batch)
    recorder = Recorder(request, "toy-gmm", "cpu", is_points=True)
    for step in sample(request, load_model("toy-gmm", device="cpu")):
        recorder.add(step)
    result = recorder.result(completed=True)
    return RunResult(request, "toy-gmm", "cpu", 0.25, result.samples, result.tracks, result.num_steps)


def image_run(batch: int = 3, frames: int = 5) -> RunResult:
    """A synthetic image-model result: (B, 3, 6, 5) samples and uint8 per-sample previews."""
    rng = np.random.default_rng(0)
    request = SamplingRequest(model="some-images", sampler="ddpm", steps="ddim25", label=(1, 0, 1),
                              seed=3, batch=batch, clip="dynamic",
                              guidance=Guidance(kind="both", scale=2.0, weight=0.5, window=(0.1, 0.9)))
    samples = rng.uniform(-1, 1, (batch, 3, 6, 5)).astype(np.float32)
    previews = [rng.integers(0, 256, (batch, 6, 5, 3), dtype=np.uint8) for _ in range(frames)]
    tracks = {"xt": previews, "x0": [None, *previews[1:]], "noise_level": list(np.linspace(1, 0.1, frames))}
    return RunResult(request, "some-images", "cuda:0", 12.5, samples, tracks, num_steps=24, completed=False)


def test_points_result_round_trips_through_png(tmp_path):
    run = points_run()
    saved = save_result(run, tmp_path)
    assert saved.samples == ()  # a 2-D model has no per-sample pictures
    assert saved.run == tmp_path / f"{saved.grid.stem}.run.npz" and len(read_run(saved.run)) == 9
    model, request = read_settings(saved.grid)
    assert (model, request) == ("toy-gmm", run.request)
    meta = read_metadata(saved.grid)
    assert meta["device"] == "cpu" and meta["seconds"] == 0.25 and meta["completed"] is True
    assert meta["app_version"] and meta["sample_index"] is None and meta["run_file"] == saved.run.name
    with Image.open(saved.grid) as img:
        assert img.size == (256, 256)


def test_image_result_saves_grid_and_every_sample_with_settings(tmp_path):
    run = image_run()
    saved = save_result(run, tmp_path, stem="run")
    assert [p.name for p in saved.all] == ["run.png", "run_sample000.png", "run_sample001.png",
                                           "run_sample002.png", "run.run.npz"]
    expected = to_uint8(torch.from_numpy(run.samples))
    for i, path in enumerate(saved.samples):
        assert read_settings(path) == ("some-images", run.request)
        assert read_metadata(path)["sample_index"] == i
        assert read_metadata(path)["completed"] is False
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), expected[i])
    assert read_settings(saved.grid)[1].guidance.window == (0.1, 0.9)


def test_png_without_our_settings_is_a_clear_error(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(ValueError, match="holds no Guidance Studio settings"):
        read_settings(plain)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ValueError, match="not a readable image"):
        read_settings(text)
    with pytest.raises(ValueError, match="No such file"):
        read_settings(tmp_path / "missing.png")


def test_damaged_settings_are_reported(tmp_path):
    path = write_png(tmp_path / "bad.png", np.zeros((4, 4, 3), np.uint8),
                     {"model": "toy-gmm", "request": {"model": "toy-gmm", "eta": 7.0}})
    with pytest.raises(ValueError, match="not valid: η must lie in"):
        read_settings(path)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old contents")

    def disk_full(self, fh, *args, **kwargs):
        fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(SaveError, match="No space left on device"):
        write_png(target, np.zeros((4, 4, 3), np.uint8), {"model": "x", "request": {}})
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_failure_midway_through_a_save_removes_the_files_already_written(tmp_path, monkeypatch):
    real = pngio.write_png
    calls = []

    def fail_third(path, picture, meta=None, parameters=None):
        calls.append(path)
        if len(calls) == 3:
            raise SaveError("Could not save: disk full.")
        return real(path, picture, meta, parameters)

    monkeypatch.setattr(pngio, "write_png", fail_third)
    with pytest.raises(SaveError):
        save_result(image_run(), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SaveError, match="Could not create the folder"):
        save_result(image_run(), blocker / "sub")


def test_gif_has_one_frame_per_step_with_xt_and_x0_side_by_side(tmp_path):
    run = points_run(steps="12", batch=32)
    path = export_gif(run, tmp_path / "traj.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 13  # the initial noise + 12 steps
        assert gif.info["loop"] == 0
        width, height = gif.size
    assert width > 2 * 256 and height > 256
    frames = trajectory_frames(run, max_frames=5)
    assert len(frames) == 5


def test_gif_of_an_image_run_and_bad_input(tmp_path):
    run = image_run(frames=4)
    with Image.open(export_gif(run, tmp_path / "img.gif")) as gif:
        assert gif.n_frames == 4
    with pytest.raises(ValueError, match="no trajectory frames"):
        export_gif(RunResult(run.request, "m", "cpu", 0.0, run.samples), tmp_path / "none.gif")
    assert not (tmp_path / "none.gif").exists()


def test_metadata_is_plain_json_in_a_text_chunk(tmp_path):
    saved = save_result(points_run(steps="4", batch=8), tmp_path)
    with Image.open(saved.grid) as img:
        data = json.loads(img.text[CHUNK_KEY])
    assert data["request"]["guidance"] == {"kind": "cfg", "scale": 0.0, "weight": 1.5, "window": [0.0, 1.0]}
