"""`python -m core train …` and `python -m core eval` end to end on a tiny generated image folder."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from core.checkpoints import CheckpointError, load_bundle
from core.cli import main
from core.netfile import load_network
from core.requests import Guidance, SamplingRequest
from core.samplers import final_sample

TINY_UNET = json.dumps({"model_channels": 32, "channel_mult": [1, 2], "attention_resolutions": [], "patch": 4})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of 8×8 grey images: a bright bar at the top ('top') or at the bottom ('bottom')."""
    root = tmp_path_factory.mktemp("data")
    for name, rows in (("bottom", slice(5, 8)), ("top", slice(0, 3))):
        (root / name).mkdir()
        for i in range(6):
            image = Image.new("L", (8, 8), 10 * i)
            pixels = image.load()
            for y in range(8)[rows]:
                for x in range(8):
                    pixels[x, y] = 250
            image.save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """A tiny diffusion bundle with a classifier stored into it, a judge, and the commands that train them."""
    out = tmp_path_factory.mktemp("models")
    common = ["--steps", "3", "--batch", "4", "--log-every", "2", "--threads", "1"]
    bundle, clf, judge = out / "tiny.safetensors", out / "clf.safetensors", out / "judge.safetensors"
    args = {
        "diffusion": ["train", "diffusion", "--data", f"folder:{folder}", "--arch", "unet-patched", "--network",
                      TINY_UNET, "--name", "tiny", "--out", str(bundle), *common],
        "classifier": ["train", "classifier", "--data", f"folder:{folder}", "--test-data", f"folder:{folder}",
                       "--network", '{"width": 8}', "--name", "tiny-clf", "--out", str(clf), "--into", str(bundle),
                       *common],
        "judge": ["train", "judge", "--data", f"folder:{folder}", "--network", '{"width": 8}', "--name", "tiny-judge",
                  "--out", str(judge), *common],
    }
    return bundle, clf, judge, args


def test_train_diffusion_classifier_and_judge(trained, capsys):
    bundle_path, clf_path, judge_path, args = trained
    assert main(args["diffusion"]) == 0
    log = capsys.readouterr().out
    assert "step 2/3" in log and "step 3/3" in log
    bundle = load_bundle(bundle_path)
    assert bundle.config.num_classes == 2 and bundle.config.class_names == ("bottom", "top")
    assert bundle.config.null_label and bundle.config.network["num_classes"] == 3  # K + 1 rows: the null label
    assert bundle.config.data_shape == (1, 32, 32) and bundle.classifier is None

    assert main(args["classifier"]) == 0
    log = capsys.readouterr().out
    assert log.count("held-out accuracy, t in") == 5 and "stored classifier 'tiny-clf'" in log
    bundle = load_bundle(bundle_path)
    assert bundle.classifier_config.architecture == "conv-classifier" and bundle.classifier_config.num_classes == 2
    classifier, info = load_network(clf_path, role="classifier")
    assert info.class_names == ("bottom", "top")
    for a, b in zip(classifier.state_dict().values(), bundle.classifier.state_dict().values()):
        assert torch.equal(a, b)
    request = SamplingRequest(model="tiny", steps="3", guidance=Guidance(kind="both", scale=1.0, weight=1.0),
                              label=(0, 1), seed=0, batch=2)
    last = final_sample(request, bundle, diagnostics=True)
    assert last.x.shape == (2, 1, 32, 32) and last.log_prob.shape == (2,) and torch.isfinite(last.x).all()

    assert main(args["judge"]) == 0
    assert "wrote" in capsys.readouterr().out
    judge, info = load_network(judge_path, role="judge")
    assert info.architecture == "judge" and judge.features(torch.zeros(3, 1, 32, 32)).shape == (3, 32)
    with pytest.raises(CheckpointError, match="holds a judge, not a classifier"):
        load_network(judge_path, role="classifier")


@pytest.mark.parametrize("guidance", ["cfg", "classifier"])
def test_eval_sweep_writes_table_csv_and_plot(trained, folder, tmp_path, capsys, guidance):
    bundle_path, _, judge_path, _ = trained
    if not judge_path.exists():
        pytest.skip("needs test_train_diffusion_classifier_and_judge first")
    code = main(["eval", "--model", str(bundle_path), "--judge", str(judge_path), "--reference", f"folder:{folder}",
                 "--guidance", guidance, "--values", "0,3", "--num", "8", "--steps", "2", "--batch", "4",
                 "--out", str(tmp_path), "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    with open(tmp_path / f"tiny-{guidance}.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["value"]) for r in rows] == [0.0, 3.0]
    for row in rows:
        assert float(row["fid"]) >= 0 and 1 <= float(row["is"]) <= 2
        assert float(row["accuracy"]) * 8 == round(float(row["accuracy"]) * 8)  # k of 8 samples agree
        assert 0 <= float(row["precision"]) <= 1 and 0 <= float(row["recall"]) <= 1
        assert f"{float(row['fid']):.3f}" in printed
    with Image.open(tmp_path / f"tiny-{guidance}.png") as plot:
        assert plot.size == (840, 384)


@pytest.mark.parametrize("argv, message", [
    (["train", "diffusion", "--data", "scurve", "--arch", "unet-patched", "--name", "x", "--out", "{tmp}/x.safetensors",
      "--num-data", "10"], "is for images"),
    (["train", "judge", "--data", "scurve", "--name", "x", "--out", "{tmp}/x.safetensors"], "for images"),
    (["train", "diffusion", "--data", "mnist:nope", "--name", "x", "--out", "{tmp}/x.safetensors"], "Unknown MNIST split"),
    (["eval", "--model", "toy-gmm", "--values", "0,a"], "--values must be numbers"),
    (["eval", "--model", "toy-gmm", "--num", "2"], "--num-samples must be at least 4"),
    (["eval", "--model", "toy-gmm", "--batch", "0"], "--batch must be at least 1"),
])
def test_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_continue_training_from_a_bundle(folder, tmp_path, capsys):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    base = ["train", "diffusion", "--data", f"folder:{folder}", "--arch", "unet-patched", "--name", "tiny",
            "--batch", "4", "--threads", "1"]
    assert main([*base, "--network", TINY_UNET, "--out", str(first), "--steps", "2"]) == 0
    assert main([*base, "--network", TINY_UNET, "--out", str(second), "--steps", "1", "--lr", "0",
                 "--init", str(first)]) == 0
    assert "starting from" in capsys.readouterr().out
    a, b = load_bundle(first), load_bundle(second)
    for (key, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), key  # lr 0: the continued model is exactly its starting point
    other = json.dumps({**json.loads(TINY_UNET), "model_channels": 64})
    assert main([*base, "--network", other, "--out", str(second), "--steps", "1", "--init", str(first)]) == 2
    assert "different network" in capsys.readouterr().err
