"""Guidance Studio's engine: schedules, samplers, guidance and models. PyTorch + numpy, no Qt."""
from .bundle import ClassifierConfig, ModelBundle, ModelConfig
from .registry import DEFAULT_MODEL, list_models, load_model
from .requests import Guidance, SamplingRequest
from .samplers import Step, final_sample, sample
from .schedule import Schedule

__all__ = [
    "ClassifierConfig", "DEFAULT_MODEL", "Guidance", "ModelBundle", "ModelConfig", "SamplingRequest",
    "Schedule", "Step", "final_sample", "list_models", "load_model", "sample",
]
