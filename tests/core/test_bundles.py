"""Bundle files: round trip, clear errors for bad files, and the shipped 2-D models."""
import json

import pytest
import torch

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, final_sample, list_models, load_model, sample
from core.checkpoints import CheckpointError, load_bundle, save_bundle
from core.models import build_network

from .conftest import nearest_component


def _mlp_bundle(num_classes=3):
    config = ModelConfig("mlp", (2,), network={"data_dim": 2, "width": 16, "depth": 1, "num_classes": num_classes},
                         num_classes=num_classes, null_label=True, clip="none")
    torch.manual_seed(0)
    return ModelBundle("tiny", config, build_network("mlp", config.network).eval())


def test_save_then_load_gives_bit_identical_samples(tmp_path):
    bundle = _mlp_bundle()
    path = save_bundle(bundle, tmp_path / "tiny.safetensors")
    loaded = load_bundle(path)
    assert loaded.config == bundle.config and loaded.name == "tiny"
    req = SamplingRequest("tiny", sampler="ddpm", steps=20, batch=4, label=1, guidance=Guidance("cfg", weight=2.0))
    torch.testing.assert_close(final_sample(req, loaded).x, final_sample(req, bundle).x, atol=0, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]  # no temporary left behind


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_bundle(_mlp_bundle(), tmp_path / "tiny.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_bundle(path)
    path.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_bundle(path)


def test_mismatched_config_names_the_first_bad_shape(tmp_path):
    path = save_bundle(_mlp_bundle(num_classes=3), tmp_path / "tiny.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    config["network"]["num_classes"] = 5
    config["num_classes"], config["class_names"] = 5, []
    save_file(load_file(str(path)), str(path), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"'label.weight' has shape \(4, 16\) in the file, but the model expects \(6, 16\)"):
        load_bundle(path)


def test_missing_key_is_named(tmp_path):
    path = save_bundle(_mlp_bundle(), tmp_path / "tiny.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    del tensors["model.out.1.bias"]
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="missing key 'out.1.bias'"):
        load_bundle(path)


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: toy-gmm"):
        load_model("no-such-model", "cpu")


def test_builtin_2d_models_are_listed_and_sample_their_data():
    names = {info.name: info for info in list_models()}
    assert {"toy-gmm", "toy-scurve", "toy-gmm-mlp"} <= set(names)
    assert names["toy-gmm-mlp"].has_classifier and names["toy-scurve"].null_label
    trained = load_model("toy-gmm-mlp", "cpu")
    req = SamplingRequest("toy-gmm-mlp", steps=50, batch=2000, seed=0)
    shares = torch.bincount(nearest_component(trained, final_sample(req, trained).x), minlength=8) / 2000
    assert (shares - 1 / 8).abs().max() < 0.04
    for kind, kw in (("cfg", dict(weight=0.0)), ("classifier", dict(scale=1.0))):
        x = final_sample(req.replace(batch=500, label=5, guidance=Guidance(kind, **kw)), trained).x
        assert (nearest_component(trained, x) == 5).double().mean() > 0.95


def test_an_unconditional_model_targets_its_classifiers_named_classes(gmm, tmp_path):
    from core import ClassifierConfig

    names = tuple(f"blob {k}" for k in range(8))
    uncond = ModelBundle("uncond", ModelConfig("gmm", (2,), network=gmm.config.network, clip="none"), gmm.model,
                         gmm.classifier, ClassifierConfig("gmm-classifier", 8, gmm.config.network, names))
    assert uncond.num_targets == 8 and uncond.target_names == names
    loaded = load_bundle(save_bundle(uncond, tmp_path / "uncond.safetensors"))
    assert loaded.target_names == names
    info = [i for i in list_models(tmp_path) if i.name == "uncond"][0]
    assert (info.num_classes, info.num_targets, info.class_names) == (0, 8, names)
    req = SamplingRequest("uncond", steps=50, batch=300, label=6, guidance=Guidance("classifier", scale=1.0))
    assert (nearest_component(gmm, final_sample(req, loaded).x) == 6).double().mean() > 0.95
    with pytest.raises(ValueError, match="out of range"):
        next(sample(req.replace(label=8), loaded))


def test_default_guidance_scale_round_trips_and_is_validated(tmp_path):
    bundle = _mlp_bundle()
    bundle.config = ModelConfig(**{**bundle.config.__dict__, "default_guidance_scale": 4.0})
    assert load_bundle(save_bundle(bundle, tmp_path / "g.safetensors")).config.default_guidance_scale == 4.0
    assert ModelConfig("mlp", (2,)).default_guidance_scale is None
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="default guidance scale"):
            ModelConfig("mlp", (2,), default_guidance_scale=bad)
