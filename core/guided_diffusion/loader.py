"""`load_checkpoint`: a guided-diffusion model (and classifier) file → a ready `ModelBundle`.

Every decision (layout, image size, heads, attention order, schedule, and the check of the flags
against the weights) is made by `plan.plan_checkpoint`, the same function the Open-model dialog shows;
this module reads the weights, builds the networks the plan describes and loads them strictly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..bundle import ClassifierConfig, ModelBundle, ModelConfig
from ..checkpoints import CheckpointError, checked_network, load_bundle, load_state_checked
from ..device import resolve_device
from . import flags as F
from .files import is_bundle, read_state_dict
from .plan import plan_checkpoint


def model_config(network: dict[str, Any], facts: F.Flags, description: str) -> ModelConfig:
    """The ModelConfig of a guided-diffusion UNet with `network` keywords and diffusion `facts`."""
    F.check_diffusion(facts)
    c_in, c_out = network["in_channels"], network["out_channels"]
    if c_out not in (c_in, 2 * c_in):
        raise CheckpointError(f"The model outputs {c_out} channels for {c_in} input channels; "
                              "expected ε (same count) or ε and a variance (twice).")
    num_classes = network.get("num_classes") or 0
    learn_sigma = c_out == 2 * c_in
    return ModelConfig(
        architecture="unet", data_shape=(c_in, network["image_size"], network["image_size"]), network=network,
        schedule=facts.noise_schedule, num_timesteps=facts.diffusion_steps, num_classes=num_classes,
        class_names=F.imagenet_class_names() if num_classes == F.NUM_CLASSES else (), null_label=False,
        learn_sigma=learn_sigma, variance="learned_range" if learn_sigma else "fixed_large", clip="clip",
        description=description,
    )


def _build(architecture: str, network: dict[str, Any], state: dict[str, Tensor], what: str) -> nn.Module:
    module = checked_network(architecture, network, state, what)
    load_state_checked(module, state, what)
    return module.eval()


def _classifier_state(path: Path) -> tuple[dict[str, Tensor], ClassifierConfig | None]:
    """Weights of a classifier file; a bundle also brings its config."""
    if is_bundle(path):
        bundle = load_bundle(path)
        if bundle.classifier is None:
            raise CheckpointError(f"{path.name} has no classifier in it.")
        return bundle.classifier.state_dict(), bundle.classifier_config
    return read_state_dict(path), None


def load_checkpoint(model_path: str | Path, classifier_path: str | Path | None = None, flags: str = "",
                    image_size: int | None = None, device: str | torch.device = "auto",
                    precision: str = "fp32") -> ModelBundle:
    """Open a guided-diffusion checkpoint (`.pt`, raw `.safetensors`, or our bundle) with an optional
    noise-aware classifier, on `device` ("auto" picks CUDA > MPS > CPU) in `precision`.

    Raises ValueError (CheckpointError) with a readable sentence for anything that does not fit.
    """
    model_path = Path(model_path)
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    parsed = F.parse_flags(flags)
    if image_size is not None:
        if int(image_size) < 1:
            raise ValueError(f"The image size must be positive, not {image_size}.")
        parsed = parsed.replace(image_size=int(image_size))

    clf_state = clf_config = None
    clf_name = Path(classifier_path).name if classifier_path is not None else ""
    if classifier_path is not None:
        clf_state, clf_config = _classifier_state(Path(classifier_path))

    base = state = None
    if is_bundle(model_path):
        base = load_bundle(model_path, "cpu")
        if clf_state is None:
            clf_state = None if base.classifier is None else base.classifier.state_dict()
            clf_config, clf_name = base.classifier_config, model_path.name
    else:
        state = read_state_dict(model_path)
    plan = plan_checkpoint(base.config if base is not None else state, model_path.name, parsed,
                           clf_config if clf_config is not None else clf_state, clf_name)
    if plan.error:
        raise CheckpointError(plan.error)
    if base is not None:
        model, config, name = base.model, base.config, base.name
    else:
        assert plan.network is not None and state is not None
        config = model_config(plan.network, plan.facts, plan.description)
        model = _build("unet", plan.network, state, f"{model_path.name} (model)")
        name = model_path.stem

    classifier = None
    if clf_state is not None:
        if clf_config is None:
            network = plan.classifier_network
            assert network is not None
            n = network["out_channels"]
            clf_config = ClassifierConfig("unet-classifier", n, network,
                                          class_names=F.imagenet_class_names() if n == F.NUM_CLASSES else ())
        classifier = _build(clf_config.architecture, dict(clf_config.network), clf_state, f"{clf_name} (classifier)")
    bundle = ModelBundle(name, config, model, classifier, clf_config if classifier is not None else None,
                         device=target, precision=precision)
    return bundle.to(target)
