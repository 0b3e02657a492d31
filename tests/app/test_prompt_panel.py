"""The prompt panel: shown for prompt models only, typed text and size reach the run's request."""
from __future__ import annotations

from PySide6.QtCore import Qt

from core import ModelBundle
from core.conditioning import Conditions

from .conftest import tiny_bundle


class PromptBundle(ModelBundle):
    """A toy bundle that takes prompts and any image size (the panels' view of a Stable Diffusion); its
    network ignores the condition, so every pass sees the same (absent) condition batch."""

    takes_prompt = True
    size_choice = True
    image_size = (64, 48)

    def conditions(self, request):
        return Conditions(base=None, cond=None, null=None, target=None)


def prompt_bundle() -> PromptBundle:
    base = tiny_bundle((3, 48, 64), name="prompted")
    return PromptBundle(base.name, base.config, base.model)


def test_prompt_fields_appear_for_prompt_models_and_carry_into_the_request(qtbot, window):
    panel = window.prompt_panel
    assert panel.isHidden()  # toy-gmm takes no prompt
    window.set_bundle(prompt_bundle())
    assert not panel.isHidden() and panel.prompt.isEnabled() and panel.width.isEnabled()
    assert (panel.width.value(), panel.height.value()) == (64, 48)  # the model's own size to start with
    qtbot.keyClicks(panel.prompt, "a red fox")
    qtbot.keyClick(panel.prompt, Qt.Key.Key_Return)
    qtbot.keyClicks(panel.prompt, "in the snow")
    qtbot.keyClicks(panel.negative, "blurry")
    panel.width.lineEdit().selectAll()
    qtbot.keyClicks(panel.width, "100")
    qtbot.keyClick(panel.width, Qt.Key.Key_Return)
    assert panel.width.value() == 104  # not a multiple of 8: the nearest one, shown
    request = window.session.request()
    assert (request.prompt, request.negative_prompt) == ("a red fox\nin the snow", "blurry")
    assert (request.width, request.height) == (104, 48)
    window.set_bundle(tiny_bundle((3, 8, 8), name="plain"))
    assert panel.isHidden() and window.session.request().prompt is None


def test_prompt_and_size_persist_across_restarts(qtbot, window, settings):
    from desktop_app.main_window import MainWindow

    window.set_bundle(prompt_bundle())
    window.session.update(prompt="an owl", negative_prompt="text", width=128, height=96)
    window.close()
    again = MainWindow(settings=settings)
    qtbot.addWidget(again)
    s = again.session.settings
    assert (s.prompt, s.negative_prompt, s.width, s.height) == ("an owl", "text", 128, 96)
