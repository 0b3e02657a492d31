"""Network definitions. Every diffusion network is called as model(x, t, y) → ε (or ε and v);
every classifier as classifier(x, t) → logits. `ARCHITECTURES` maps a config's architecture key to
a builder taking the config's `network` keyword arguments."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..checks import finite, shown, whole
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


# The type and range of every keyword a network config may give (the same name means the same thing in
# every architecture), so that a damaged or hostile config is refused before anything is built: a range
# bounds what one keyword can ask for; the weights a file holds bound the rest (core.checkpoints).
_WHOLE = {
    "num_components": (1, 4096), "num_timesteps": (1, 100_000), "data_dim": (1, 65_536), "width": (1, 16_384),
    "depth": (0, 256), "num_classes": (0, 1_000_000), "image_size": (1, 8192), "in_channels": (1, 4096),
    "model_channels": (1, 8192), "out_channels": (1, 1_000_000), "num_res_blocks": (0, 64),
    "num_heads": (1, 4096), "num_head_channels": (-1, 8192), "num_heads_upsample": (-1, 4096), "patch": (1, 64),
}
_REAL = {"radius": (0.0, 1e6), "std": (1e-9, 1e6), "dropout": (0.0, 0.99)}
_FLAG = ("conv_resample", "use_scale_shift_norm", "resblock_updown", "use_new_attention_order")
_TEXT = ("schedule", "parametrization", "pool")
_LISTS = {"attention_resolutions": (0, 16, (1, 8192), whole), "channel_mult": (1, 16, (1e-3, 64.0), finite)}


def check_network(architecture: str, network: Any) -> dict[str, Any]:
    """The keyword arguments of `architecture` after checking their names, types and ranges; ValueError
    (one sentence) for an unknown architecture, an unknown keyword or a bad value."""
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown network architecture {shown(architecture)}; known: "
                         f"{', '.join(sorted(ARCHITECTURES))}.")
    if not isinstance(network, Mapping) or not all(isinstance(k, str) for k in network):
        raise ValueError(f"The settings of a {architecture!r} network must be a record, got {shown(network)}.")
    accepted = _keywords(ARCHITECTURES[architecture])
    unknown = sorted(set(network) - accepted) if accepted is not None else []
    if unknown:
        raise ValueError(f"Bad settings for a {architecture!r} network: unknown setting {shown(unknown[0])}.")
    return {key: _check_keyword(f"The {architecture} network's {key}", key, value) for key, value in network.items()}


_PASSES_ON = {PatchedUNet: UNetModel, GaussianMixtureClassifier: GaussianMixture}  # builders' **kwargs go there


def _keywords(builder: Callable[..., nn.Module]) -> set[str] | None:
    """The keyword names `builder` takes; None when it takes any."""
    names: set[str] = set()
    for parameter in inspect.signature(builder).parameters.values():
        if parameter.kind is not parameter.VAR_KEYWORD:
            names.add(parameter.name)
        elif builder in _PASSES_ON:
            names |= _keywords(_PASSES_ON[builder]) or set()
        else:
            return None
    return names


def _check_keyword(name: str, key: str, value: Any) -> Any:
    if key in _WHOLE:
        return None if value is None and key == "num_classes" else whole(name, value, *_WHOLE[key])
    if key in _REAL:
        return finite(name, value, *_REAL[key])
    if key in _FLAG and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {shown(value)}.")
    if key in _TEXT and not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {shown(value)}.")
    if key in _LISTS:
        shortest, longest, bounds, check = _LISTS[key]
        if not isinstance(value, (list, tuple)) or not shortest <= len(value) <= longest:
            raise ValueError(f"{name} must be a list of {shortest} to {longest} numbers, got {shown(value)}.")
        return [check(name, v, *bounds) for v in value]
    if not (value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and value == value)):
        raise ValueError(f"{name} must be a plain value, got {shown(value)}.")
    return value


def network_io(architecture: str, network: Mapping[str, Any]) -> tuple[tuple[int | None, ...] | None, int | None]:
    """(the shape of one sample the network takes, None for a size it does not fix; how many outputs it
    gives per sample: channels of ε, or logits) from its keywords and the builder's defaults, without
    building it; (None, None) for an architecture that does not say."""
    given = check_network(architecture, network)
    builder = ARCHITECTURES[architecture]
    kwargs: dict[str, Any] = {}
    for cls in (_PASSES_ON.get(builder), builder):  # the defaults, those of what **kwargs go to first
        if cls is not None:
            kwargs.update({name: p.default for name, p in inspect.signature(cls).parameters.items()
                           if p.default is not p.empty})
    kwargs.update(given)
    if architecture == "mlp":
        return (kwargs["data_dim"],), kwargs["data_dim"]
    if architecture in ("gmm", "gmm-classifier"):
        return (2,), 2 if architecture == "gmm" else kwargs["num_components"]
    if architecture in ("unet", "unet-patched", "unet-classifier"):
        side = kwargs["image_size"]
        return (kwargs["in_channels"], side, side), kwargs["out_channels"]
    if architecture in ("judge", "conv-classifier"):
        return (kwargs["in_channels"], None, None), kwargs["num_classes"]
    return None, None


def build_network(architecture: str, network: Mapping[str, Any]) -> nn.Module:
    """Instantiate a registered architecture with its keyword arguments (checked by `check_network`)."""
    kwargs = check_network(architecture, network)
    try:
        return ARCHITECTURES[architecture](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Bad settings for a {architecture!r} network: {exc}") from None
