"""diffusers pipelines in the window, as a user opens them: the Open-model dialog on a tiny pipeline folder,
a prompt typed into the Prompt panel, a run, and both panes read back pixel for pixel."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from PySide6.QtCore import Qt  # noqa: E402

from core import sample  # noqa: E402
from core.images import pixels  # noqa: E402
from desktop_app.run.trajectory import preview_grid  # noqa: E402

from ..diffusers_fixtures import save_dit_pipeline, save_sd_pipeline  # noqa: E402
from .conftest import LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {"sd": save_sd_pipeline(root / "sd-tiny"), "dit": save_dit_pipeline(root / "dit-tiny")}


def open_through_dialog(qtbot, window, folder):
    window.open_model_dialog()
    dialog = window.open_dialog
    with qtbot.waitSignal(dialog.plan_changed, timeout=5000):
        qtbot.keyClicks(dialog.model_edit, str(folder))
    summary = " ".join(dialog.summary_text().split())
    assert dialog.open_button.isEnabled() and not dialog.classifier_edit.isEnabled()
    with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT_MS):
        dialog.open_button.click()
    return summary


def run(qtbot, window):
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
        window.run_panel.start_button.click()
    return done.args[0]


def test_open_a_stable_diffusion_folder_type_a_prompt_run_and_read_both_panes(qtbot, window, folders):
    summary = open_through_dialog(qtbot, window, folders["sd"])
    assert window.bundle._latent_rgb is not None  # fitted while loading, not at the first run's first step
    assert "Diffusers pipeline folder — sd-tiny" in summary and "StableDiffusionPipeline (Stable Diffusion)" in summary
    assert "default CFG γ = 7.5 (w = 6.5)" in summary
    panel = window.prompt_panel
    assert not panel.isHidden() and window.views.exact_decode_box.isVisibleTo(window)
    assert window.guidance_panel.gamma.value() == 7.5 and window.session.settings.guidance == "cfg"
    assert not window.guidance_panel.target.isEnabled() and "prompt" in window.guidance_panel.target.toolTip()
    qtbot.keyClicks(panel.prompt, "a cat")
    qtbot.keyClicks(panel.negative, "a dog")
    panel.width.lineEdit().selectAll()
    qtbot.keyClicks(panel.width, "24")
    qtbot.keyClick(panel.width, Qt.Key.Key_Return)
    window.session.update(steps="4", batch_images=2, seed=3)
    result = run(qtbot, window)
    request = window.session.request()
    assert (result.request.prompt, result.request.negative_prompt, result.request.width) == ("a cat", "a dog", 24)
    steps = list(sample(request, window.bundle))
    final = window.bundle.decode(steps[-1].x)
    assert result.samples.shape == (2, 3, 16, 24)
    np.testing.assert_allclose(result.samples, final.numpy(), atol=1e-5)
    shown = preview_grid(pixels(final))
    for pane in window.views.image_panes:  # the final image, VAE-decoded, in both panes
        assert np.abs(pane.image.astype(int) - shown.astype(int)).max() <= 1
    window.views.slider.setValue(2)
    xt = preview_grid(pixels(window.bundle.preview(steps[2].x)))  # x_t through the fast latent→RGB map
    assert window.views.image_panes[0].image.shape == xt.shape == (8 + 4, 2 * 12 + 6, 3)
    assert np.abs(window.views.image_panes[0].image.astype(int) - xt.astype(int)).max() <= 1
    unguided = run_with(qtbot, window, prompt="a dog")
    assert np.abs(unguided.samples - result.samples).max() > 1e-3  # the prompt steers the images


def run_with(qtbot, window, **settings):
    window.session.update(**settings)
    return run(qtbot, window)


def test_open_a_dit_folder_and_sample_a_named_class(qtbot, window, folders):
    open_through_dialog(qtbot, window, folders["dit"])
    panel = window.guidance_panel
    assert window.prompt_panel.isHidden() and panel.gamma.value() == 4.0
    assert panel.target.itemText(207) == "class number 207"
    panel.target.setCurrentIndex(207)
    panel.target.activated.emit(207)
    result = run_with(qtbot, window, steps="3", batch_images=1, seed=1)
    assert result.request.label == 207 and result.samples.shape == (1, 3, 16, 16)
    final = window.bundle.decode(list(sample(window.session.request(), window.bundle))[-1].x)
    np.testing.assert_allclose(result.samples, final.numpy(), atol=1e-5)
