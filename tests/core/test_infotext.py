"""The `parameters` text other Stable Diffusion tools write and read (AUTOMATIC1111's infotext)."""
from __future__ import annotations

import pytest

from core import Guidance, SamplingRequest
from core.infotext import format_infotext, parse_infotext, settings_from_infotext, step_count

SD_REQUEST = SamplingRequest(model="tiny-sd", sampler="ddim", steps="30", guidance=Guidance("cfg", weight=6.5),
                             seed=42, batch=2, prompt="a red fox, in the snow\nwatercolour", negative_prompt="blurry",
                             width=512, height=384)

# Written the way those tools write it: prompt lines, the negative prompt, then one line of pairs, values
# holding a comma or colon quoted as JSON strings.
FOREIGN = ("masterpiece, a lighthouse at dusk\n(detailed:1.2)\nNegative prompt: lowres, watermark\n"
           "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 2179987202, Size: 768x512, Model hash: 93b79e09ed, "
           'Model: dreamy-v2, Clip skip: 2, Lora hashes: "fox: 1a2b, owl: 3c4d"')


def test_our_images_are_written_as_those_tools_write_them():
    text = format_infotext(SD_REQUEST, "tiny-sd: v1", 512, 384, index=1)
    assert text == ("a red fox, in the snow\nwatercolour\nNegative prompt: blurry\n"
                    'Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 43, Size: 512x384, Model: "tiny-sd: v1"')
    plain = SD_REQUEST.replace(guidance=Guidance("none"), negative_prompt="", sampler="ddpm", steps="ddim25")
    assert format_infotext(plain, "m", 64, 64) == "a red fox, in the snow\nwatercolour\n" \
                                                  "Steps: 25, Sampler: DDPM, Seed: 42, Size: 64x64, Model: m"


def test_round_trip_fills_every_setting_it_carries():
    info = parse_infotext(format_infotext(SD_REQUEST, "tiny-sd: v1", 512, 384, index=1))
    assert (info.prompt, info.negative_prompt) == ("a red fox, in the snow\nwatercolour", "blurry")
    assert info.pairs["Model"] == "tiny-sd: v1"
    changes, applied, skipped = settings_from_infotext(info)
    assert changes == {"prompt": "a red fox, in the snow\nwatercolour", "negative_prompt": "blurry", "steps": "30",
                       "sampler": "ddim", "guidance": "cfg", "weight": 6.5, "seed": 43, "width": 512, "height": 384}
    assert applied[:3] == ["prompt", "negative prompt", "Steps: 30"]
    assert skipped == ["Model: tiny-sd: v1 (open that model yourself; the settings go to the model now open)"]


def test_another_tools_parameters_map_what_they_can_and_name_the_rest():
    info = parse_infotext(FOREIGN)
    assert info.prompt == "masterpiece, a lighthouse at dusk\n(detailed:1.2)"
    assert info.negative_prompt == "lowres, watermark"
    assert info.pairs["Lora hashes"] == "fox: 1a2b, owl: 3c4d" and info.pairs["Seed"] == "2179987202"
    changes, _, skipped = settings_from_infotext(info)
    assert changes == {"prompt": info.prompt, "negative_prompt": "lowres, watermark", "steps": "20",
                       "guidance": "cfg", "weight": 6.0, "seed": 2179987202, "width": 768, "height": 512}
    assert skipped == ["Sampler: Euler a (the studio samples with DDIM or DDPM)", "Model hash: 93b79e09ed",
                       "Model: dreamy-v2 (open that model yourself; the settings go to the model now open)",
                       "Clip skip: 2", "Lora hashes: fox: 1a2b, owl: 3c4d"]


def test_odd_texts():
    prompt_only = parse_infotext("just a prompt: with a colon, and a comma")
    assert prompt_only.prompt == "just a prompt: with a colon, and a comma" and prompt_only.pairs == {}
    info = parse_infotext("Steps: 0, CFG scale: -2, Seed: 7, Size: 500x500")
    changes, _, skipped = settings_from_infotext(info)
    assert changes == {"seed": 7}
    assert skipped == ["Steps: 0 (not a value the studio can use)", "CFG scale: -2 (not a value the studio can use)",
                       "Size: 500x500 (the studio's sizes are multiples of 8)"]
    with pytest.raises(ValueError, match="empty"):
        parse_infotext("  \n ")
    assert (step_count("ddim25"), step_count("10,15,20"), step_count("250")) == (25, 45, 250)


def test_the_cli_png_of_a_prompt_model_carries_the_parameters_chunk(tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from core.cli import main
    from core.pngmeta import read_text_chunks

    from ..diffusers_fixtures import save_sd_pipeline

    folder = save_sd_pipeline(tmp_path / "sd-tiny")
    out = tmp_path / "fox.png"
    assert main(["sample", "--model", str(folder), "--prompt", "a fox, running", "--negative-prompt", "dog",
                 "--guidance", "cfg", "--weight", "6.5", "--steps", "3", "--seed", "4", "--num", "1",
                 "--width", "24", "--height", "16", "--out", str(out)]) == 0
    assert read_text_chunks(out)["parameters"] == ("a fox, running\nNegative prompt: dog\n"
                                                   "Steps: 3, Sampler: DDIM, CFG scale: 7.5, Seed: 4, Size: 24x16, "
                                                   "Model: sd-tiny")
