"""The plan of an Open-model: what a load will use, where each value comes from, warnings, sampling flags."""
from __future__ import annotations

import pytest
import torch

from core import model_plan
from core.checkpoints import save_bundle
from core.guided_diffusion import load_checkpoint, parse_flags, unet_network
from core.guided_diffusion.files import read_shapes, read_state_dict
from core.model_plan import BUNDLE, DIFFUSERS, GUIDED_DIFFUSION, open_planned, plan_open
from core.models import build_network

from .test_guided_diffusion_loading import CLASSIFIER, FLAGS, randomize

# What the weights cannot tell about the FLAGS model (cosine schedule, 100 steps, 32-channel heads, new order).
UNKNOWABLE = "--noise_schedule cosine --diffusion_steps 100 --num_head_channels 32 --use_new_attention_order True"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    torch.save(randomize(build_network("unet", unet_network(parse_flags(FLAGS))), 1).state_dict(), folder / "model.pt")
    torch.save(randomize(build_network("unet-classifier", CLASSIFIER), 2).state_dict(), folder / "classifier.pt")
    return folder


def rows(plan, part="model"):
    return {s.name: s for s in plan.settings if s.part == part}


def test_empty_flags_show_what_was_inferred_and_warn_about_every_unconfirmed_default(files):
    plan = plan_open(files / "model.pt", files / "classifier.pt")
    assert plan.ok and plan.family == GUIDED_DIFFUSION and plan.kind == "guided-diffusion checkpoint"
    model = rows(plan)
    assert model["layout"].value == "32 channels × 1,2,2, 1 res-blocks per level, attention at 16,8"
    assert model["layout"].source == "the weights" and not model["layout"].warning
    assert (model["image size"].value, model["image size"].source) == ("32×32", "the classifier (classifier.pt)")
    assert model["classes"].value == "1000 (ImageNet), class-conditional"
    assert model["output"].value == "ε and a learned variance"
    assert (model["schedule"].value, model["schedule"].source) == ("linear, 1000 steps", "guided-diffusion's default")
    assert [name.split(":")[0] for name in plan.warnings] == ["schedule", "attention heads", "attention order"]
    assert rows(plan, "classifier")["layout"].value.startswith("width 32 × 1,2,2, depth 1")
    assert plan.sampling == {} and plan.applied == () and plan.unused == ()


def test_flags_for_the_unknowables_silence_the_warnings_and_change_the_load(files):
    plan = plan_open(files / "model.pt", files / "classifier.pt", UNKNOWABLE)
    assert plan.ok and plan.warnings == ()
    assert rows(plan)["schedule"].value == "cosine, 100 steps" and rows(plan)["schedule"].source == "your flags"
    assert rows(plan)["attention order"].value.startswith("new")
    bundle = open_planned(plan, device="cpu")
    assert (bundle.config.schedule, bundle.config.num_timesteps) == ("cosine", 100)
    assert bundle.config.network["use_new_attention_order"] is True
    assert "cosine schedule (100 steps)" in bundle.config.description
    reference = load_checkpoint(files / "model.pt", files / "classifier.pt", flags=FLAGS, device="cpu")
    x, t, y = torch.randn(1, 3, 32, 32), torch.tensor([7]), torch.tensor([3])
    with torch.no_grad():
        assert torch.equal(bundle.model(x, t, y), reference.model(x, t, y))


def test_pasted_sampling_flags_become_panel_settings_and_the_rest_is_named(files):
    text = (f'MODEL_FLAGS="{UNKNOWABLE}"\nSAMPLE_FLAGS="--batch_size 4 --num_samples 100 --timestep_respacing ddim25 '
            '--use_ddim True"\n--classifier_scale 3 --use_fp16 True --lr 1e-4 --model_path models/x.pt')
    plan = plan_open(files / "model.pt", files / "classifier.pt", text)
    assert plan.ok
    assert plan.sampling == {"batch": 4, "steps": "ddim25", "sampler": "ddim", "eta": 0.0, "guidance": "classifier",
                             "scale": 3.0}
    assert "Steps = ddim25 (--timestep_respacing ddim25)" in plan.applied
    assert "Guidance = classifier, s = 3 (--classifier_scale 3)" in plan.applied
    unused = "\n".join(plan.unused)
    for flag in ("--num_samples 100", "--use_fp16 True", "--lr 1e-4", "--model_path models/x.pt"):
        assert flag in unused
    without = plan_open(files / "model.pt", None, "--image_size 32 --classifier_scale 3")
    assert "guidance" not in without.sampling
    assert without.unused == ("--classifier_scale 3: no classifier is chosen, so there is no classifier guidance",)


@pytest.mark.parametrize("text,message", [
    (f"{UNKNOWABLE} --timestep_respacing ddim33", "--timestep_respacing ddim33: Cannot take exactly 33 evenly strided"),
    ("--classifier_scale lots", "--classifier_scale takes a number"),
    ("--classifier_width 64", "The flags do not match the weights: classifier_width: 32 in the file, 64 in your flags"),
    ("--num_channels 64 --learn_sigma False",
     "num_channels: 32 in the file, 64 in your flags; learn_sigma: True in the file, False in your flags"),
    ("--image_size 64", "image_size: 32 in the classifier file, 64 in your flags"),
    ("--noise_schedule cosine --frobnicate 1", "Unknown guided-diffusion flag --frobnicate"),
    ("--predict_xstart True", "Models that predict x0"),
])
def test_bad_flags_are_one_readable_error(files, text, message):
    plan = plan_open(files / "model.pt", files / "classifier.pt", text)
    assert not plan.ok and message in plan.error and "\n" not in plan.error
    with pytest.raises(ValueError, match="."):
        open_planned(plan)


def test_bundles_carry_their_own_settings_and_flags_are_checked_against_them(files, tmp_path):
    reference = load_checkpoint(files / "model.pt", files / "classifier.pt", flags=FLAGS, device="cpu")
    path = save_bundle(reference, tmp_path / "gd.safetensors")
    plan = plan_open(path)
    assert plan.ok and plan.family == BUNDLE and plan.warnings == ()
    assert rows(plan)["schedule"].value == "cosine, 100 steps" and rows(plan)["schedule"].source == "the file"
    assert rows(plan, "classifier")["classes"].value == "1000"
    clash = plan_open(path, flags="--noise_schedule linear --num_channels 64 --timestep_respacing 25")
    assert clash.error == ("The flags do not match the weights: "
                           "noise_schedule: cosine in gd.safetensors, linear in your flags.")
    assert clash.unused == ("--num_channels 64: the bundle carries its own layout",)
    assert open_planned(plan_open(path), device="cpu").config == reference.config


def test_paths_that_are_no_model_are_named(tmp_path, files):
    assert plan_open(tmp_path / "absent.pt").error == f"No such file or folder: {tmp_path / 'absent.pt'}."
    assert "without model_index.json" in plan_open(tmp_path).error
    assert "classifier checkpoint, not a diffusion model" in plan_open(files / "classifier.pt").error
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert "junk.pt: the file is damaged" in plan_open(tmp_path / "junk.pt").error


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Tiny Stable Diffusion and DiT pipeline folders (tests/diffusers_fixtures.py)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from ..diffusers_fixtures import save_dit_pipeline, save_sd_pipeline

    root = tmp_path_factory.mktemp("pipelines")
    return {"sd": save_sd_pipeline(root / "sd-tiny"), "dit": save_dit_pipeline(root / "dit-tiny")}


def test_a_pipeline_folder_is_planned_from_its_files_alone(pipelines):
    plan = plan_open(pipelines["sd"], flags="--image_size 64")
    assert plan.ok and plan.family == DIFFUSERS and plan.kind == "diffusers pipeline folder" and plan.warnings == ()
    assert not plan.accepts_classifier and not plan.accepts_flags
    model = rows(plan)
    assert model["pipeline"].value == "StableDiffusionPipeline (Stable Diffusion)"
    assert model["image size"].value == "16×16 from 8×8 latents (×2); any multiple of 8 in the Prompt panel"
    assert model["conditioning"].value == "a prompt and a negative prompt (CLIPTextModel)"
    assert model["schedule"].value == ("scaled_linear β 0.00085–0.012 over 1000 steps, leading spacing, "
                                       "steps offset 1, epsilon")
    assert model["schedule"].source == "scheduler/scheduler_config.json"
    assert model["default CFG"].value == "γ = 7.5 (w = 6.5)" and model["memory"].value.startswith("about ")
    assert plan.unused == ("--image_size 64: guided-diffusion flags do not apply to diffusers models",)
    bundle = open_planned(plan, device="cpu")
    assert bundle.takes_prompt and bundle.config.default_guidance_scale == 7.5
    dit = rows(plan_open(pipelines["dit"]))
    assert dit["classes"].value == "1000, its id2label names, null class 1000 (CFG)"
    assert dit["default CFG"].value == "γ = 4 (w = 3)" and dit["image size"].value == "16×16 from 8×8 latents (×2)"


def test_a_pipeline_without_the_optional_packages_says_how_to_add_them(pipelines, monkeypatch):
    monkeypatch.setattr(model_plan, "diffusers_missing", lambda: ["diffusers", "transformers"])
    plan = plan_open(pipelines["dit"])
    assert rows(plan)["pipeline"].value == "DiTPipeline (DiT)"  # still read: no diffusers needed for that
    assert "diffusers and transformers are missing" in plan.error and 'pip install -e ".[diffusers]"' in plan.error


def test_a_broken_pipeline_folder_names_what_is_wrong(pipelines, tmp_path):
    import shutil

    folder = shutil.copytree(pipelines["sd"], tmp_path / "no-vae", ignore=shutil.ignore_patterns("vae"))
    assert "the 'vae' component (AutoencoderKL) is missing" in plan_open(folder).error
    assert plan_open(pipelines["sd"], classifier_path=pipelines["sd"] / "model_index.json").error.startswith(
        "A noise-aware classifier goes with guided-diffusion checkpoints")


def test_shapes_are_read_without_the_weights_and_cached_per_file(files, tmp_path):
    from safetensors.torch import save_file

    state = read_state_dict(files / "model.pt")
    save_file(state, tmp_path / "raw.safetensors")
    for path in (files / "model.pt", tmp_path / "raw.safetensors"):
        shapes = read_shapes(path)
        assert {k: tuple(v.shape) for k, v in shapes.items()} == {k: tuple(v.shape) for k, v in state.items()}
        assert {v.device.type for v in shapes.values()} == {"meta"}
    cache: dict = {}
    for text in ("", UNKNOWABLE, "--image_size 32"):
        assert plan_open(files / "model.pt", files / "classifier.pt", text, shapes=cache).ok
    assert len(cache) == 2
