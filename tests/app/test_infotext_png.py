"""PNGs and the ecosystem's `parameters` chunk: ours carry it for prompt models, theirs fill the panels."""
from __future__ import annotations

import numpy as np
from PIL import Image, PngImagePlugin

from core.infotext import parse_infotext
from core.pngmeta import read_text_chunks

from .conftest import RUN_TIMEOUT_MS, tiny_bundle
from .test_prompt_panel import prompt_bundle


def test_a_prompt_model_png_carries_the_parameters_chunk(qtbot, window, tmp_path):
    window.set_bundle(prompt_bundle())
    window.session.update(prompt="a red fox", negative_prompt="blurry", guidance="cfg", weight=6.5, steps="4",
                          seed=9, batch_images=2)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
    saved = window.results.save_to(tmp_path / "fox.png")
    second = read_text_chunks(saved.samples[1])
    assert second["parameters"] == ("a red fox\nNegative prompt: blurry\n"
                                    "Steps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 10, Size: 64x48, Model: prompted")
    assert "guidance-studio" in second and "Seed: 9," in read_text_chunks(saved.grid)["parameters"]
    window.set_bundle(tiny_bundle((3, 48, 64), name="plain"))
    window.session.update(guidance="none")
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
    assert "parameters" not in read_text_chunks(window.results.save_to(tmp_path / "plain.png").grid)


def test_opening_another_tools_png_fills_what_maps_and_says_what_did_not(qtbot, window, tmp_path):
    window.set_bundle(prompt_bundle())
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse at dusk\nNegative prompt: lowres\nSteps: 20, Sampler: Euler a, "
                                "CFG scale: 5, Seed: 1234, Size: 96x64, Model hash: 93b79e09ed, Model: dreamy-v2")
    path = tmp_path / "theirs.png"
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(path, pnginfo=info)
    assert window.results.open_file(path)
    s = window.session.settings
    assert (s.prompt, s.negative_prompt, s.steps, s.guidance, s.weight, s.seed, s.width, s.height) == \
           ("a lighthouse at dusk", "lowres", "20", "cfg", 4.0, 1234, 96, 64)
    assert window.prompt_panel.prompt.toPlainText() == "a lighthouse at dusk"
    assert window.guidance_panel.gamma.value() == 5
    note = window.results.note_box.text()
    assert "From theirs.png (written by another tool): prompt, negative prompt, Steps: 20" in note
    assert "Not used:\nSampler: Euler a (the studio samples with DDIM or DDPM)\nModel hash: 93b79e09ed\n" \
           "Model: dreamy-v2 (open that model yourself" in note
    assert parse_infotext(read_text_chunks(path)["parameters"]).pairs["Seed"] == "1234"
