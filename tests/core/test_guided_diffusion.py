"""guided-diffusion flags, presets and layout inference (no weights are loaded here)."""
from __future__ import annotations

import pytest
import torch

from core import ModelConfig
from core.checkpoints import CheckpointError
from core.guided_diffusion import (
    CLASSIFIER_PRESETS,
    MODEL_PRESETS,
    Flags,
    classifier_network,
    imagenet_class_names,
    infer_classifier,
    infer_unet,
    parse_flags,
    unet_network,
)
from core.guided_diffusion.plan import plan_checkpoint
from core.models import build_network

README_64 = ('MODEL_FLAGS="--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 '
             '--image_size 64 --learn_sigma True --noise_schedule cosine --num_channels 192 --num_head_channels 64 '
             '--num_res_blocks 3 --resblock_updown True --use_new_attention_order True --use_fp16 True '
             '--use_scale_shift_norm True"\n--classifier_scale 1.0 --classifier_path models/64x64_classifier.pt '
             '--classifier_depth 4 --model_path models/64x64_diffusion.pt --batch_size 4 --timestep_respacing 250')


def meta_state(architecture: str, network: dict) -> dict[str, torch.Tensor]:
    """Weights with the right shapes and no storage: layout tests of full-size models cost nothing."""
    with torch.device("meta"):
        return build_network(architecture, network).state_dict()


# --- flags -------------------------------------------------------------------------------------------

def test_readme_line_parses_with_sampling_flags_ignored():
    flags = parse_flags(README_64)
    assert (flags.image_size, flags.num_channels, flags.num_res_blocks, flags.num_head_channels) == (64, 192, 3, 64)
    assert flags.class_cond and flags.learn_sigma and flags.resblock_updown and flags.use_new_attention_order
    assert (flags.noise_schedule, flags.dropout, flags.classifier_depth) == ("cosine", 0.1, 4)
    assert "batch_size" not in flags.given and "classifier_depth" in flags.given
    assert flags.num_heads == 4 and "num_heads" not in flags.given  # script_util default, not given


def test_absent_flags_take_script_util_defaults():
    flags = parse_flags("")
    assert flags == Flags() and not flags.given
    assert (flags.image_size, flags.num_channels, flags.attention_resolutions, flags.use_scale_shift_norm) == \
        (64, 128, "16,8", True)
    assert (flags.classifier_width, flags.classifier_depth, flags.classifier_pool) == (128, 2, "attention")


def test_equals_form_and_booleans():
    flags = parse_flags("--class_cond=yes --learn_sigma 0 --num_heads_upsample -1 --channel_mult 1,2")
    assert flags.class_cond is True and flags.learn_sigma is False
    assert flags.num_heads_upsample == -1 and flags.channel_mult == "1,2"


def test_flags_become_the_networks_create_model_builds():
    flags = parse_flags(README_64)
    assert unet_network(flags) == dict(
        image_size=64, in_channels=3, model_channels=192, out_channels=6, num_res_blocks=3,
        attention_resolutions=[2, 4, 8], dropout=0.1, channel_mult=[1, 2, 3, 4], conv_resample=True,
        num_classes=1000, num_heads=4, num_head_channels=64, num_heads_upsample=-1,
        use_scale_shift_norm=True, resblock_updown=True, use_new_attention_order=True)
    assert classifier_network(flags) == dict(
        image_size=64, in_channels=3, model_channels=128, out_channels=1000, num_res_blocks=4,
        attention_resolutions=[2, 4, 8], channel_mult=[1, 2, 3, 4], num_head_channels=64,
        use_scale_shift_norm=True, resblock_updown=True, pool="attention")
    assert unet_network(parse_flags("--image_size 512"))["channel_mult"] == [0.5, 1, 1, 2, 2, 4, 4]
    assert unet_network(parse_flags("--image_size 32 --channel_mult 1,2,2"))["channel_mult"] == [1, 2, 2]
    assert unet_network(parse_flags("--class_cond False"))["num_classes"] is None


@pytest.mark.parametrize("text,message", [
    ("--num_chanels 128", "Unknown guided-diffusion flag --num_chanels"),
    ("--image_size", "--image_size has no value"),
    ("--class_cond maybe", "--class_cond takes True or False"),
    ("--num_channels wide", "--num_channels takes a whole number"),
    ("64", "Expected a flag"),
    ("--large_size 256 --small_size 64", "Super-resolution"),
    ('--image_size "64', "could not be read"),
])
def test_bad_flags_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        parse_flags(text)


def test_flag_values_that_cannot_build_are_explained():
    with pytest.raises(ValueError, match="does not divide the image size"):
        unet_network(parse_flags("--attention_resolutions 24"))
    with pytest.raises(ValueError, match="no default channel_mult for 48"):
        unet_network(parse_flags("--image_size 48"))


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[1], names[207], names[999]) == ("tench", "goldfish", "Golden Retriever", "toilet paper")


# --- presets and inference ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_inference_recovers_every_published_model_layout(name):
    expected = unet_network(parse_flags(MODEL_PRESETS[name]))
    inferred = infer_unet(meta_state("unet", expected))
    assert inferred.pop("levels") == len(expected["channel_mult"])
    for key in ("image_size", "num_heads", "num_head_channels", "num_heads_upsample", "use_new_attention_order"):
        expected.pop(key)
    assert {**inferred, "dropout": expected["dropout"]} == expected


@pytest.mark.parametrize("name", sorted(CLASSIFIER_PRESETS))
def test_inference_recovers_every_published_classifier_layout(name):
    expected = classifier_network(parse_flags(CLASSIFIER_PRESETS[name]))
    inferred = infer_classifier(meta_state("unet-classifier", expected))
    levels, pool_size = inferred.pop("levels"), inferred.pop("pool_size")
    assert pool_size * 2 ** (levels - 1) == expected["image_size"]
    assert {k: inferred[k] for k in expected if k in inferred} == \
        {k: expected[k] for k in expected if k in inferred}
    assert set(expected) - set(inferred) == {"image_size", "num_head_channels"}


def rows(decisions, part="model"):
    return {s.name: s for s in decisions.settings if s.part == part}


def test_published_pair_resolves_by_file_name_alone():
    preset = parse_flags(MODEL_PRESETS["64x64_diffusion.pt"])
    state = meta_state("unet", unet_network(preset))
    clf_preset = parse_flags(CLASSIFIER_PRESETS["64x64_classifier.pt"])
    clf_state = meta_state("unet-classifier", classifier_network(clf_preset))
    d = plan_checkpoint(state, "64x64_diffusion.pt", Flags(), clf_state, "64x64_classifier.pt")
    assert d.error is None and d.network == unet_network(preset) and d.facts.noise_schedule == "cosine"
    model = rows(d)
    assert model["schedule"].source == "the preset for 64x64_diffusion.pt" and not model["schedule"].warning
    assert model["attention heads"].value == "64 channels per head"
    assert model["attention order"].value.startswith("new")
    assert not any(s.warning for s in d.settings)
    assert {k: d.classifier_network[k] for k in classifier_network(clf_preset)} == classifier_network(clf_preset)
    assert rows(d, "classifier")["image size"].value == "64×64"
    assert "cosine schedule (1000 steps)" in d.description


def test_same_weights_under_another_name_are_inferred_with_defaults_and_warnings():
    preset = parse_flags(MODEL_PRESETS["64x64_diffusion.pt"])
    state = meta_state("unet", unet_network(preset))
    d = plan_checkpoint(state, "my_model.pt", Flags())
    # Layout from the weights; the size guessed from the default channel_mult of 64×64; the rest is unknowable.
    network = d.network
    assert network["image_size"] == 64 and network["channel_mult"] == [1, 2, 3, 4] and d.error is None
    assert (network["num_heads"], network["use_new_attention_order"], d.facts.noise_schedule) == (4, False, "linear")
    warned = {name: s.warning for name, s in rows(d).items() if s.warning}
    assert set(warned) == {"image size", "schedule", "attention heads", "attention order"}
    assert "--noise_schedule and --diffusion_steps" in warned["schedule"]
    assert rows(d)["layout"].source == "the weights" and rows(d)["classes"].value.startswith("1000 (ImageNet)")
    assert "linear schedule (1000 steps)" in d.description
    assert "schedule from guided-diffusion's default" in d.description
    d = plan_checkpoint(state, "my_model.pt", parse_flags(
        "--noise_schedule cosine --num_head_channels 64 --use_new_attention_order True --image_size 64 "
        "--diffusion_steps 1000"))
    assert d.network == unet_network(preset) | {"dropout": 0.0} and d.facts.noise_schedule == "cosine"
    assert not any(s.warning for s in d.settings)
    assert {s.source for s in d.settings} == {"the weights", "your flags"}


SMALL = dict(image_size=32, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=2,
             attention_resolutions=[2], dropout=0.0, channel_mult=[1, 2, 2], conv_resample=True,
             num_classes=None, use_scale_shift_norm=False, resblock_updown=False)


@pytest.mark.parametrize("changes", [
    {},
    dict(resblock_updown=True, use_scale_shift_norm=True),
    dict(conv_resample=False),
    dict(num_classes=11, out_channels=6, in_channels=3),
    dict(in_channels=1, out_channels=2, channel_mult=[1, 1, 2], attention_resolutions=[1, 4]),
    dict(model_channels=64, channel_mult=[0.5, 1, 2], num_res_blocks=1),
    dict(attention_resolutions=[], num_res_blocks=3),
])
def test_inference_recovers_small_layouts(changes):
    network = {**SMALL, **changes}
    inferred = infer_unet(meta_state("unet", network))
    assert inferred.pop("levels") == 3
    assert inferred == {k: v for k, v in network.items() if k != "image_size"}


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_inference_recovers_classifier_heads(pool):
    network = dict(image_size=32, in_channels=3, model_channels=32, out_channels=7, num_res_blocks=1,
                   attention_resolutions=[2, 4], channel_mult=[1, 2, 2], num_head_channels=32,
                   use_scale_shift_norm=True, resblock_updown=True, pool=pool)
    inferred = infer_classifier(meta_state("unet-classifier", network))
    assert (inferred["pool"], inferred["out_channels"], inferred["num_res_blocks"]) == (pool, 7, 1)
    assert inferred["channel_mult"] == [1, 2, 2] and inferred["attention_resolutions"] == [2, 4]
    assert ("pool_size" in inferred) == (pool == "attention")


def test_ambiguous_layout_asks_for_flags():
    # Equal widths, no attention, res-block downsampling: 1 level of 3 blocks or 2 levels of 1 block.
    network = dict(image_size=32, in_channels=3, model_channels=32, out_channels=5, num_res_blocks=1,
                   attention_resolutions=[], channel_mult=[1, 1], resblock_updown=True, pool="adaptive")
    with pytest.raises(ValueError, match="ambiguous.*give its flags"):
        infer_classifier(meta_state("unet-classifier", network))
    # The UNet's up path settles the same question.
    unet = {**SMALL, "channel_mult": [1, 1], "attention_resolutions": [], "resblock_updown": True, "num_res_blocks": 1}
    assert infer_unet(meta_state("unet", unet))["levels"] == 2


def test_model_and_classifier_files_swapped_are_named():
    unet_state = meta_state("unet", SMALL)
    clf_state = meta_state("unet-classifier", dict(image_size=32, in_channels=3, model_channels=32, out_channels=5,
                                                   num_res_blocks=1, attention_resolutions=[], channel_mult=[1, 2]))
    with pytest.raises(CheckpointError, match="classifier checkpoint, not a diffusion model"):
        infer_unet(clf_state)
    with pytest.raises(CheckpointError, match="diffusion model checkpoint, not a classifier"):
        infer_classifier(unet_state)
    with pytest.raises(CheckpointError, match="no 'time_embed.0.weight'"):
        infer_unet({"fc.weight": torch.zeros(2, 2)})


def test_unknown_image_size_is_asked_for():
    state = meta_state("unet", SMALL)  # channel_mult 1,2,2 is no guided-diffusion default
    assert "give the image size" in plan_checkpoint(state, "m.pt", Flags()).error
    assert plan_checkpoint(state, "m.pt", parse_flags("--image_size 32")).network["image_size"] == 32
    clf = meta_state("unet-classifier", dict(image_size=64, in_channels=3, model_channels=32, out_channels=5,
                                            num_res_blocks=1, attention_resolutions=[], channel_mult=[1, 2, 2],
                                            num_head_channels=32, pool="attention"))
    d = plan_checkpoint(state, "m.pt", Flags(), clf, "c.pt")
    assert d.network["image_size"] == 64 and rows(d)["image size"].source == "the classifier (c.pt)"
    assert not rows(d)["image size"].warning


def test_classifier_built_for_another_size_is_refused():
    network = classifier_network(parse_flags(CLASSIFIER_PRESETS["64x64_classifier.pt"]))
    clf = meta_state("unet-classifier", network)
    d = plan_checkpoint(meta_state("unet", SMALL), "m.pt", parse_flags("--image_size 128"), clf, "c.pt")
    assert d.error == "The flags do not match the weights: image_size: 64 in the classifier file, 128 in your flags."
    bundle_config = ModelConfig("unet", (3, 128, 128))
    d = plan_checkpoint(bundle_config, "m.safetensors", Flags(), clf, "c.pt")
    assert d.error == "c.pt classifies 64×64 images, but the model makes 128×128."


def test_classifier_heads_follow_create_classifier():
    from core.guided_diffusion.plan import classifier_head_channels

    narrow = dict(model_channels=32, channel_mult=[1, 2, 3, 4], attention_resolutions=[2, 8])
    assert classifier_head_channels(narrow) == 64  # what create_classifier builds, whatever the width
    assert classifier_head_channels({**narrow, "attention_resolutions": []}) == 64  # middle block and pool: 128
    assert classifier_head_channels({**narrow, "attention_resolutions": [1]}) == 32  # 32 channels: only 32 fits
