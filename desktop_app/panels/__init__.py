"""The settings panels. Each is a thin view over a `Session`: user edits go to `session.update`,
and `refresh()` (called on every session change) writes the session back into the widgets."""
from .guidance_panel import GuidancePanel
from .model_panel import ModelPanel
from .prompt_panel import PromptPanel
from .run_panel import RunPanel
from .sampler_panel import SamplerPanel

__all__ = ["GuidancePanel", "ModelPanel", "PromptPanel", "RunPanel", "SamplerPanel"]
