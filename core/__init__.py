"""Guidance Studio's engine: schedules, samplers, guidance and models. PyTorch + numpy, no Qt.

The names below are imported on first use (PEP 562), so `import core.runs` or `from core import
SamplingRequest` does not load torch: the desktop app reads run files and PNG settings before the
engine has loaded.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ClassifierConfig": "bundle", "ModelBundle": "bundle", "ModelConfig": "bundle",
    "DEFAULT_MODEL": "registry", "list_models": "registry", "load_model": "registry",
    "Guidance": "requests", "SamplingRequest": "requests",
    "Step": "samplers", "final_sample": "samplers", "sample": "samplers",
    "Schedule": "schedule",
}

__all__ = [
    "ClassifierConfig", "DEFAULT_MODEL", "Guidance", "ModelBundle", "ModelConfig", "SamplingRequest",
    "Schedule", "Step", "final_sample", "list_models", "load_model", "sample",
]

if TYPE_CHECKING:
    from .bundle import ClassifierConfig, ModelBundle, ModelConfig
    from .registry import DEFAULT_MODEL, list_models, load_model
    from .requests import Guidance, SamplingRequest
    from .samplers import Step, final_sample, sample
    from .schedule import Schedule


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
