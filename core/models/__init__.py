"""Network definitions. Every diffusion network is called as model(x, t, y) → ε (or ε and v);
every classifier as classifier(x, t) → logits. `ARCHITECTURES` maps a config's architecture key to
a builder taking the config's `network` keyword arguments."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .classifier import EncoderUNetModel
from .gmm import GaussianMixture, GaussianMixtureClassifier
from .judge import Judge, NoisyConvClassifier
from .mlp import MLPDenoiser
from .patched_unet import PatchedUNet
from .unet import UNetModel

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "gmm": GaussianMixture,
    "gmm-classifier": GaussianMixtureClassifier,
    "mlp": MLPDenoiser,
    "unet": UNetModel,
    "unet-classifier": EncoderUNetModel,
    "unet-patched": PatchedUNet,
    "judge": Judge,  # clean-image evaluation network (never used for guidance)
    "conv-classifier": NoisyConvClassifier,
}


def build_network(architecture: str, network: dict) -> nn.Module:
    """Instantiate a registered architecture with its keyword arguments."""
    try:
        builder = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"Unknown network architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}."
        ) from None
    try:
        return builder(**network)
    except TypeError as exc:
        raise ValueError(f"Bad settings for a {architecture!r} network: {exc}.") from None
