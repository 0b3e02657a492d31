"""Loading guided-diffusion files: safe unpickling, damaged files, round trips, and sampling them."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from core import Guidance, SamplingRequest, final_sample, load_model, sample
from core.checkpoints import CheckpointError, save_bundle
from core.cli import main as cli_main
from core.guided_diffusion import classifier_network, load_checkpoint, parse_flags, presets, unet_network
from core.guided_diffusion.files import read_state_dict
from core.models import build_network
from core.schedule import parse_respacing

FLAGS = ("--image_size 32 --num_channels 32 --num_res_blocks 1 --attention_resolutions 16,8 --channel_mult 1,2,2 "
         "--class_cond True --learn_sigma True --num_head_channels 32 --resblock_updown True "
         "--use_scale_shift_norm True --use_new_attention_order True --noise_schedule cosine --diffusion_steps 100")
CLASSIFIER = dict(image_size=32, in_channels=3, model_channels=32, out_channels=1000, num_res_blocks=1,
                  attention_resolutions=[2, 4], channel_mult=[1, 2, 2], num_head_channels=64,  # as create_classifier
                  use_scale_shift_norm=True, resblock_updown=True, pool="attention")


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return module.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small class-conditional, learned-sigma model and its attention-pool classifier as .pt files."""
    folder = tmp_path_factory.mktemp("gd")
    model = randomize(build_network("unet", unet_network(parse_flags(FLAGS))), 1)
    classifier = randomize(build_network("unet-classifier", CLASSIFIER), 2)
    torch.save(model.state_dict(), folder / "model.pt")
    torch.save(classifier.state_dict(), folder / "classifier.pt")
    return folder, model, classifier


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
T = torch.tensor([5, 77])
Y = torch.tensor([207, 1])


def request(**kw) -> SamplingRequest:
    base = dict(model="m", sampler="ddim", steps="ddim4", guidance=Guidance(kind="classifier", scale=3.0),
                label=207, seed=11, batch=2)
    return SamplingRequest(**{**base, **kw})


# --- reading files -----------------------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "it-ran"
    for path, save in ((tmp_path / "evil.pt", torch.save), (tmp_path / "evil.pkl", None)):
        payload = {"weight": torch.zeros(2), "payload": _RunsCode(str(marker))}
        if save is not None:
            save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(CheckpointError, match="refused.*would run code"):
            read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_files_are_named(files, tmp_path, damage):
    data = (files[0] / "model.pt").read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint at all", "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="bad.pt: the file is damaged"):
        load_checkpoint(bad, device="cpu")


def test_damaged_safetensors_is_named(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        read_state_dict(bad)


def test_files_without_weights_are_named(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    torch.save({"step": 3}, tmp_path / "dict.pt")
    for name in ("list.pt", "dict.pt"):
        with pytest.raises(CheckpointError, match="does not hold a network's weights"):
            read_state_dict(tmp_path / name)
    with pytest.raises(ValueError, match="No such checkpoint file"):
        read_state_dict(tmp_path / "absent.pt")


def test_wrapped_and_data_parallel_state_dicts_are_unwrapped(tmp_path):
    torch.save({"state_dict": {"module.a": torch.ones(2)}, "epoch": torch.tensor(3)}, tmp_path / "w.pt")
    assert list(read_state_dict(tmp_path / "w.pt")) == ["a"]


# --- loading -------------------------------------------------------------------------------------------

def test_flags_and_inference_load_the_same_exact_network(files):
    folder, model, classifier = files
    with torch.no_grad():
        expected = model(X, T, Y)
    by_flags = load_checkpoint(folder / "model.pt", folder / "classifier.pt", flags=FLAGS, device="cpu")
    inferred = load_checkpoint(folder / "model.pt", folder / "classifier.pt",
                               flags="--noise_schedule cosine --diffusion_steps 100 --num_head_channels 32 "
                                     "--use_new_attention_order True", device="cpu")
    for bundle in (by_flags, inferred):
        with torch.no_grad():
            assert torch.equal(bundle.model(X, T, Y), expected)
            assert torch.equal(bundle.classifier(X, T), classifier(X, T))
        cfg = bundle.config
        assert (cfg.architecture, cfg.data_shape, cfg.num_classes, cfg.null_label) == ("unet", (3, 32, 32), 1000, False)
        assert (cfg.learn_sigma, cfg.variance, cfg.clip, cfg.schedule, cfg.num_timesteps) == \
            (True, "learned_range", "clip", "cosine", 100)
        assert cfg.class_name(207) == "Golden Retriever"
        assert bundle.classifier_config.num_classes == 1000
    # Without flags the weights still give the layout and the classifier's pool gives the image size.
    plain = load_checkpoint(folder / "model.pt", folder / "classifier.pt", device="cpu")
    assert plain.config.data_shape == (3, 32, 32) and plain.config.schedule == "linear"


def test_preset_supplies_what_the_weights_cannot(files, monkeypatch, tmp_path):
    folder = files[0]
    monkeypatch.setitem(presets.MODEL_PRESETS, "tiny_diffusion.pt", FLAGS)
    (tmp_path / "tiny_diffusion.pt").write_bytes((folder / "model.pt").read_bytes())
    bundle = load_checkpoint(tmp_path / "tiny_diffusion.pt", device="cpu")
    assert (bundle.config.schedule, bundle.config.num_timesteps, bundle.config.data_shape) == ("cosine", 100, (3, 32, 32))
    assert bundle.config.network == unet_network(parse_flags(FLAGS)) | {"dropout": 0.0}
    assert "preset for tiny_diffusion.pt" in bundle.config.description


def test_flags_that_contradict_the_weights_name_the_flag_and_both_values(files):
    folder = files[0]
    for change, message in ((("--num_channels 32", "--num_channels 64"), "num_channels: 32 in the file, 64 in your flags"),
                            (("--resblock_updown True", "--resblock_updown False"),
                             "resblock_updown: True in the file, False in your flags"),
                            (("--class_cond True", "--class_cond False"), "class_cond: True in the file, False in your flags"),
                            (("--attention_resolutions 16,8", "--attention_resolutions 8"),
                             "attention_resolutions: 16,8 in the file, 8 in your flags")):
        with pytest.raises(CheckpointError, match=f"The flags do not match the weights: {message}"):
            load_checkpoint(folder / "model.pt", flags=FLAGS.replace(*change), device="cpu")
    with pytest.raises(CheckpointError, match="classifier_width: 32 in the file, 64 in your flags; "
                                              "classifier_depth: 1 in the file, 2 in your flags"):
        load_checkpoint(folder / "model.pt", folder / "classifier.pt", device="cpu",
                        flags="--classifier_width 64 --classifier_depth 2")


def test_classifier_given_as_model_is_named(files):
    with pytest.raises(CheckpointError, match="classifier checkpoint"):
        load_checkpoint(files[0] / "classifier.pt", device="cpu")


def test_fp16_is_for_cuda_only(files):
    with pytest.raises(ValueError, match="fp16 runs only on CUDA"):
        load_checkpoint(files[0] / "model.pt", files[0] / "classifier.pt", device="cpu", precision="fp16")


# --- round trips and sampling ------------------------------------------------------------------------------

def test_convert_round_trip_is_bit_identical(files, tmp_path):
    folder = files[0]
    original = load_checkpoint(folder / "model.pt", folder / "classifier.pt", flags=FLAGS, device="cpu")
    out = tmp_path / "tiny.safetensors"
    assert cli_main(["convert", str(folder / "model.pt"), "--classifier", str(folder / "classifier.pt"),
                     "--flags", FLAGS, "--out", str(out)]) == 0
    reopened = load_model(out, device="cpu")
    assert reopened.config == original.config and reopened.classifier_config == original.classifier_config
    with torch.no_grad():
        assert torch.equal(reopened.model(X, T, Y), original.model(X, T, Y))
        assert torch.equal(reopened.classifier(X, T), original.classifier(X, T))
    for req in (request(), request(sampler="ddpm", steps="5", guidance=Guidance(kind="none"), label=3)):
        a, b = final_sample(req, original, diagnostics=True), final_sample(req, reopened, diagnostics=True)
        assert torch.equal(a.x, b.x) and torch.equal(a.x0, b.x0)
        assert a.log_prob is not None and torch.equal(a.log_prob, b.log_prob)


def test_load_model_opens_pt_and_bundle_takes_a_separate_classifier(files, tmp_path):
    folder = files[0]
    original = load_checkpoint(folder / "model.pt", folder / "classifier.pt", flags=FLAGS, device="cpu")
    save_bundle(load_checkpoint(folder / "model.pt", flags=FLAGS, device="cpu"), tmp_path / "m.safetensors")
    combined = load_checkpoint(tmp_path / "m.safetensors", folder / "classifier.pt", device="cpu")
    assert torch.equal(final_sample(request(), combined).x, final_sample(request(), original).x)
    with pytest.raises(ValueError, match="give the image size"):
        load_model(folder / "model.pt", device="cpu")


def test_bundle_classifier_and_raw_safetensors_are_accepted(files, tmp_path):
    from safetensors.torch import save_file

    folder, model, _ = files
    original = load_checkpoint(folder / "model.pt", folder / "classifier.pt", flags=FLAGS, device="cpu")
    save_bundle(original, tmp_path / "both.safetensors")
    save_file(model.state_dict(), tmp_path / "raw.safetensors")
    reopened = load_checkpoint(tmp_path / "raw.safetensors", tmp_path / "both.safetensors", flags=FLAGS, device="cpu")
    assert torch.equal(final_sample(request(), reopened).x, final_sample(request(), original).x)


def test_convert_rejects_a_bad_output_name(files, tmp_path, capsys):
    assert cli_main(["convert", str(files[0] / "model.pt"), "--flags", FLAGS, "--out", str(tmp_path / "x.pt")]) == 2
    assert "must be a .safetensors file" in capsys.readouterr().err


class _Recorder(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x, t, *rest):
        self.seen.append(t.tolist())
        return self.inner(x, t, *rest)


@pytest.mark.parametrize("sampler,steps", [("ddim", "ddim4"), ("ddpm", "3,2")])
def test_sampling_feeds_original_timesteps_to_model_and_classifier(files, sampler, steps, monkeypatch):
    # One torch thread: each pass is one forward of the whole batch (on more threads a step may be sliced
    # over the cores, core.guidance._Ways), so every call sees the step's t for both samples.
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    folder = files[0]
    bundle = load_checkpoint(folder / "model.pt", folder / "classifier.pt", flags=FLAGS, device="cpu")
    bundle.model, bundle.classifier = _Recorder(bundle.model), _Recorder(bundle.classifier)
    steps_seen = [s.timestep for s in sample(request(sampler=sampler, steps=steps), bundle)][1:]
    kept = parse_respacing(steps, 100)
    assert kept != list(range(len(kept)))  # respaced: original indices differ from positions
    expected = sorted(kept, reverse=True)
    assert steps_seen == expected
    assert bundle.model.seen == [[t, t] for t in expected]
    assert bundle.classifier.seen == [[t, t] for t in expected]


def test_a_narrow_classifier_made_by_guided_diffusions_tools_gives_its_own_logits(tmp_path):
    """create_classifier always builds 64-channel attention heads, whatever the width: a width-32
    classifier (levels 32, 64, 96, 128; attention where the width is 64 and 128) loads with those heads."""
    flags = parse_flags("--image_size 64 --classifier_width 32 --classifier_depth 1 "
                        "--classifier_attention_resolutions 32,8")
    network = classifier_network(flags)
    assert network["num_head_channels"] == 64 and network["channel_mult"] == [1, 2, 3, 4]
    reference = randomize(build_network("unet-classifier", network), 5)
    torch.save(reference.state_dict(), tmp_path / "narrow_classifier.pt")
    model = randomize(build_network("unet", unet_network(parse_flags(
        "--image_size 64 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 32"))), 6)
    torch.save(model.state_dict(), tmp_path / "small_diffusion.pt")
    bundle = load_checkpoint(tmp_path / "small_diffusion.pt", tmp_path / "narrow_classifier.pt", device="cpu")
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    t = torch.tensor([10, 400, 900])
    with torch.no_grad():
        assert torch.equal(bundle.classifier(x, t), reference(x, t))
    assert bundle.classifier_config.network["num_head_channels"] == 64
