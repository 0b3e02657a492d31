"""The Open-model dialog, used as a new user would: fill the form, read the summary, open, check the panels."""
from __future__ import annotations

import pytest
import torch

from core.guided_diffusion import parse_flags, unet_network
from core.models import build_network

from ..core.test_guided_diffusion_loading import CLASSIFIER, FLAGS, randomize
from .conftest import LOAD_TIMEOUT_MS


@pytest.fixture(scope="module")
def gd_files(tmp_path_factory):
    """A tiny guided-diffusion model (cosine, new attention order: things the weights cannot tell) and classifier."""
    folder = tmp_path_factory.mktemp("gd-files")
    torch.save(randomize(build_network("unet", unet_network(parse_flags(FLAGS))), 1).state_dict(), folder / "model.pt")
    torch.save(randomize(build_network("unet-classifier", CLASSIFIER), 2).state_dict(), folder / "classifier.pt")
    return folder


@pytest.fixture
def dialog(qtbot, window):
    window.open_model_dialog()
    dlg = window.open_dialog
    assert dlg.isVisible() and not dlg.open_button.isEnabled()
    return dlg


def type_into(qtbot, dlg, widget, text):
    """Type at the end of `widget`'s text and wait for the summary to follow."""
    if hasattr(widget, "moveCursor"):
        from PySide6.QtGui import QTextCursor

        widget.moveCursor(QTextCursor.MoveOperation.End)
    from PySide6.QtCore import Qt

    with qtbot.waitSignal(dlg.plan_changed, timeout=5000):
        for i, line in enumerate(text.split("\n")):
            if i:
                qtbot.keyClick(widget, Qt.Key.Key_Return)
            qtbot.keyClicks(widget, line)


def summary(dlg) -> str:
    """The summary as one line of words (table cells are separate lines in plain text)."""
    return " ".join(dlg.summary_text().split())


def test_a_guided_diffusion_file_is_summarised_with_warnings_and_its_sampling_flags_reach_the_panels(
        qtbot, window, dialog, gd_files):
    type_into(qtbot, dialog, dialog.model_edit, str(gd_files / "model.pt"))
    text = summary(dialog)
    assert "Guided-diffusion checkpoint — model.pt" in text
    assert "Cannot open: model.pt: the image size cannot be told from the weights; give the image size" in text
    assert not dialog.open_button.isEnabled()

    type_into(qtbot, dialog, dialog.classifier_edit, str(gd_files / "classifier.pt"))
    text = summary(dialog)
    assert "image size 32×32 from the classifier (classifier.pt)" in text
    assert "schedule linear, 1000 steps from guided-diffusion's default" in text
    assert text.count("⚠") == 4  # schedule, heads, order, and the closing note
    assert "3 settings below are defaults the weights cannot confirm" in text and dialog.open_button.isEnabled()

    type_into(qtbot, dialog, dialog.flags, "--noise_schedule cosine --diffusion_steps 100 --num_head_channels 32\n"
                                           "--use_new_attention_order True\n"
                                           "--timestep_respacing ddim25 --classifier_scale 3 --num_samples 50")
    text = summary(dialog)
    assert "⚠" not in text and "schedule cosine, 100 steps from your flags" in text
    assert "Set in the panels when the model opens: Steps = ddim25 (--timestep_respacing ddim25) " \
           "Guidance = classifier, s = 3 (--classifier_scale 3)" in text
    assert "Not used: --num_samples 50: a run samples one batch" in text

    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        dialog.open_button.click()
    assert window.bundle.config.schedule == "cosine" and window.bundle.config.network["use_new_attention_order"]
    s = window.session.settings
    assert (s.steps, s.guidance, s.scale) == ("ddim25", "classifier", 3.0)
    assert window.sampler_panel.steps.currentText() == "ddim25" and window.guidance_panel.scale.value() == 3.0
    assert "cosine schedule, 100 steps" in window.model_panel.info.text()
    assert "cosine schedule (100 steps)" in window.model_panel.info.text()  # the description states it too


def test_a_flag_that_contradicts_the_weights_is_named_with_both_values(qtbot, dialog, gd_files):
    dialog.set_model(str(gd_files / "model.pt"), str(gd_files / "classifier.pt"), "--image_size 32")
    assert dialog.open_button.isEnabled()
    type_into(qtbot, dialog, dialog.flags, " --classifier_width 64")
    assert "classifier_width: 32 in the file, 64 in your flags" in summary(dialog)
    assert not dialog.open_button.isEnabled() and "classifier_width" in dialog.open_button.toolTip()


def test_a_preset_fills_the_flags(qtbot, dialog, gd_files):
    dialog.set_model(str(gd_files / "model.pt"))
    index = dialog.preset.findText("64x64_diffusion.pt")
    dialog.preset.setCurrentIndex(index)
    dialog.preset.activated.emit(index)
    assert "--noise_schedule cosine" in dialog.flags.toPlainText()
    qtbot.waitSignal(dialog.plan_changed, timeout=5000).wait()
    # The preset is for another network: the summary names the first disagreement.
    assert "num_channels: 32 in the file, 192 in your flags" in summary(dialog)


def test_a_pipeline_folder_without_diffusers_says_how_to_add_it(qtbot, dialog, tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from core import model_plan

    from ..diffusers_fixtures import save_dit_pipeline

    folder = save_dit_pipeline(tmp_path / "dit-tiny")
    monkeypatch.setattr(model_plan, "diffusers_missing", lambda: ["diffusers"])
    type_into(qtbot, dialog, dialog.model_edit, str(folder))
    text = summary(dialog)
    assert "Diffusers pipeline folder" in text and "pipeline DiTPipeline (DiT) from model_index.json" in text
    assert 'pip install -e ".[diffusers]"' in text and "diffusers is missing" in text
    assert not dialog.open_button.isEnabled() and not dialog.classifier_edit.isEnabled()


def test_the_last_file_model_reopens_with_its_flags_after_a_restart(qtbot, window, settings, gd_files):
    from desktop_app.main_window import MainWindow

    flags = "--noise_schedule cosine --diffusion_steps 100 --timestep_respacing ddim5"
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        window.open_checkpoint(str(gd_files / "model.pt"), str(gd_files / "classifier.pt"), flags)
    window.session.update(steps="ddim10")
    window.close()
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    with qtbot.waitSignal(again.model_loaded, timeout=LOAD_TIMEOUT_MS):
        again.begin_startup()
    assert again.bundle.config.schedule == "cosine" and again.bundle.classifier is not None
    assert again.session.settings.steps == "ddim10"  # the flags' sampling settings were for the first opening
