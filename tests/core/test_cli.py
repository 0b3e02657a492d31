"""`python -m core`: sampling to files, listing models, readable errors with exit status 2."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.cli import main


def test_sample_writes_samples_and_labels(tmp_path):
    out = tmp_path / "out.npz"
    assert main(["sample", "--model", "toy-gmm", "--sampler", "ddim", "--steps", "50", "--eta", "0",
                 "--guidance", "cfg", "--weight", "2", "--label", "3", "--seed", "0", "--num", "300",
                 "--out", str(out)]) == 0
    data = np.load(out)
    assert data["samples"].shape == (300, 2) and data["samples"].dtype == np.float32
    assert (data["labels"] == 3).all()
    angle = np.arctan2(data["samples"][:, 1], data["samples"][:, 0])
    assert np.abs(angle - 3 * np.pi / 4).max() < 0.3  # all in component 3


def test_chunked_sampling_equals_one_batch(tmp_path):
    one, chunked = tmp_path / "a.npz", tmp_path / "b.npz"
    common = ["sample", "--sampler", "ddpm", "--steps", "40", "--num", "10", "--label", "0,1,2"]
    assert main(common + ["--out", str(one)]) == 0
    assert main(common + ["--batch", "3", "--out", str(chunked)]) == 0
    np.testing.assert_allclose(np.load(one)["samples"], np.load(chunked)["samples"], atol=1e-6)
    assert np.load(one)["labels"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]


def test_png_output_is_a_picture(tmp_path):
    out = tmp_path / "points.png"
    assert main(["sample", "--num", "50", "--out", str(out)]) == 0
    assert Image.open(out).size == (256, 256)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--guidance", "cfg", "--weight", "2"], "Choose a target class"),
        (["--guidance", "cfg", "--weight", "nan", "--label", "1"], "finite"),
        (["--label", "three"], "--label must be"),
        (["--window", "0.5"], "--window must be"),
        (["--model", "nope"], "No model called 'nope'"),
        (["--steps", "0"], "Bad steps"),
        (["--batch", "-2"], "--batch must be 0"),
        (["--threads", "-1"], "--threads must be 0"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    assert main(["sample", *args, "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_models_json_lists_the_builtins():
    result = subprocess.run([sys.executable, "-m", "core", "models", "--json"], capture_output=True, text=True, check=True)
    names = [m["name"] for m in json.loads(result.stdout)]
    assert names[0] == "toy-gmm" and "toy-scurve" in names


def test_png_output_carries_the_apps_settings_record(tmp_path):
    from core import Guidance, SamplingRequest
    from core.pngmeta import read_metadata, read_settings

    out = tmp_path / "cfg.png"
    assert main(["sample", "--guidance", "cfg", "--weight", "2", "--label", "5", "--seed", "7", "--steps", "20",
                 "--num", "40", "--out", str(out)]) == 0
    model, request = read_settings(out)  # what File › Open run or PNG reads
    assert model == "toy-gmm"
    assert request == SamplingRequest(model="toy-gmm", steps="20", guidance=Guidance("cfg", weight=2.0), label=5,
                                      seed=7, batch=40)
    assert read_metadata(out)["cli"] is True and read_metadata(out)["device"] == "cpu"


def test_npz_output_is_a_run_file_with_every_step(tmp_path):
    from core.runs import read_run

    out = tmp_path / "run.npz"
    assert main(["sample", "--sampler", "ddpm", "--steps", "30", "--label", "0,1", "--num", "6", "--out", str(out)]) == 0
    run = read_run(out)
    data = np.load(out)
    assert run.model_name == "toy-gmm" and run.request.label == (0, 1, 0, 1, 0, 1) and run.completed
    assert len(run) == 31 and run.num_steps == 30
    np.testing.assert_array_equal(run.samples, data["samples"])
    np.testing.assert_allclose(run.track("xt")[0], data["x_T"], atol=2e-3)  # step 0 is the initial noise
    np.testing.assert_allclose(run.track("xt")[30], data["samples"], atol=2e-3)
    chunked = tmp_path / "chunked.npz"
    assert main(["sample", "--num", "6", "--batch", "4", "--out", str(chunked)]) == 0
    assert len(read_run(chunked)) == 0 and read_run(chunked).samples.shape == (6, 2)  # final samples only
    bare = tmp_path / "bare.npz"
    assert main(["sample", "--num", "6", "--no-trajectory", "--out", str(bare)]) == 0
    assert len(read_run(bare)) == 0
