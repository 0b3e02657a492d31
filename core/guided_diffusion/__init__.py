"""openai/guided-diffusion checkpoints: flags, presets for the published files, layout inference
from weights, and `load_checkpoint` → ModelBundle. The networks themselves live in core/models."""
from .flags import Flags, classifier_network, imagenet_class_names, parse_flags, unet_network
from .infer import infer_classifier, infer_unet
from .loader import load_checkpoint
from .presets import CLASSIFIER_PRESETS, MODEL_PRESETS

__all__ = [
    "CLASSIFIER_PRESETS", "Flags", "MODEL_PRESETS", "classifier_network", "imagenet_class_names",
    "infer_classifier", "infer_unet", "load_checkpoint", "parse_flags", "unet_network",
]
