"""`load_checkpoint`: a guided-diffusion model (and classifier) file → a ready `ModelBundle`.

Where each setting comes from:
- layout: the flags when they name any layout flag (built exactly as guided-diffusion's scripts
  would, so a wrong file fails with the first missing/unexpected key or shape); otherwise inferred
  from the weights (core/guided_diffusion/infer.py);
- what the weights cannot tell (image size, heads, attention order, schedule, steps): the flags,
  then the preset for the file name (when its layout matches the weights), then guided-diffusion's
  defaults. The image size: `image_size` or the flags or preset, else the size the classifier's
  attention pool was built for, else the size whose default channel_mult the weights show; if none
  applies it is asked for (ValueError).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..bundle import ClassifierConfig, ModelBundle, ModelConfig
from ..checkpoints import CheckpointError, load_bundle, load_state_checked
from ..device import resolve_device
from ..models import build_network
from . import flags as F
from .files import is_bundle, read_state_dict
from .infer import infer_classifier, infer_unet
from .presets import classifier_preset, model_preset

_LAYOUT_KEYS = ("in_channels", "model_channels", "out_channels", "num_res_blocks", "channel_mult",
                "use_scale_shift_norm", "resblock_updown", "num_classes", "pool")


def _same_layout(a: dict[str, Any], b: dict[str, Any]) -> bool:
    same = all(a.get(k) == b.get(k) for k in _LAYOUT_KEYS)
    return same and sorted(a["attention_resolutions"]) == sorted(b["attention_resolutions"])


def _facts(flags: F.Flags, preset: F.Flags | None) -> F.Flags:
    """The preset (or defaults) with every explicitly given flag on top."""
    return (preset or F.Flags()).replace(**{k: getattr(flags, k) for k in flags.given})


def _size_from_mult(mult: list[float]) -> int | None:
    for size, default in F.DEFAULT_CHANNEL_MULT.items():
        if list(default) == list(mult):
            return size
    return None


def model_network(state: dict[str, Tensor], file_name: str, flags: F.Flags,
                  size_hint: int | None = None) -> tuple[dict[str, Any], F.Flags, str]:
    """(unet keywords, the flags in force, where the layout came from) for a diffusion checkpoint."""
    preset = model_preset(file_name)
    if flags.gives_any(F.MODEL_LAYOUT):
        facts = _facts(flags, None)
        return F.unet_network(facts), facts, "the given flags"
    inferred = infer_unet(state)
    levels = inferred.pop("levels")
    if preset is not None and not _same_layout(F.unet_network(preset), inferred):
        preset = None  # a renamed file: trust the weights, not the name
    facts = _facts(flags, preset)
    size = ((facts.image_size if "image_size" in facts.given else None) or size_hint
            or _size_from_mult(inferred["channel_mult"]))
    if size is None:
        raise ValueError(f"{file_name}: the image size cannot be told from the weights "
                         f"({levels} levels); give the image size (e.g. --image_size 64).")
    network = {**inferred, "image_size": size, "dropout": facts.dropout, "num_heads": facts.num_heads,
               "num_head_channels": facts.num_head_channels, "num_heads_upsample": facts.num_heads_upsample,
               "use_new_attention_order": facts.use_new_attention_order}
    source = f"the preset for {file_name}" if preset is not None else "the weights"
    return network, facts, source


def classifier_network(state: dict[str, Tensor], file_name: str, flags: F.Flags,
                       image_size: int | None) -> tuple[dict[str, Any], int | None]:
    """(unet-classifier keywords, the image size the classifier was built for, if it says)."""
    preset = classifier_preset(file_name)
    if flags.gives_any(F.CLASSIFIER_LAYOUT):
        facts = _facts(flags, None)
        if image_size is not None:
            facts = facts.replace(image_size=image_size)
        return F.classifier_network(facts), facts.image_size
    inferred = infer_classifier(state)
    levels, pool_size = inferred.pop("levels"), inferred.pop("pool_size", None)
    native = None if pool_size is None else pool_size * 2 ** (levels - 1)
    if preset is not None and native in (None, preset.image_size):
        native = native or preset.image_size
    size = image_size or native or _size_from_mult(inferred["channel_mult"])
    if size is None:
        raise ValueError(f"{file_name}: the image size cannot be told from the weights; give it.")
    if native is not None and native != size:
        raise CheckpointError(f"{file_name} classifies {native}×{native} images, but the model makes {size}×{size}.")
    # guided-diffusion's classifiers use 64-channel heads; narrower home-made ones fall back to 32.
    widths = [int(m * inferred["model_channels"]) for m in inferred["channel_mult"]]
    head_channels = 64 if all(w % 64 == 0 for w in widths) else 32
    return {**inferred, "image_size": size, "num_head_channels": head_channels}, native


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
    module = build_network(architecture, network)
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
    if classifier_path is not None:
        clf_state, clf_config = _classifier_state(Path(classifier_path))

    if is_bundle(model_path):
        base = load_bundle(model_path, "cpu")
        model, config, name = base.model, base.config, base.name
        if clf_state is None:
            clf_state = None if base.classifier is None else base.classifier.state_dict()
            clf_config = base.classifier_config
    else:
        state = read_state_dict(model_path)
        hint = None
        if clf_state is not None and clf_config is None and "image_size" not in parsed.given:
            try:  # an attention-pool classifier knows its image size; anything else is checked below
                hint = classifier_network(clf_state, Path(classifier_path).name, parsed, None)[1]
            except ValueError:
                hint = None
        network, facts, source = model_network(state, model_path.name, parsed, hint)
        size = network["image_size"]
        kind = "class-conditional" if network.get("num_classes") else "unconditional"
        config = model_config(network, facts, f"guided-diffusion {size}×{size} {kind} model "
                                                f"({model_path.name}; layout from {source}).")
        model = _build("unet", network, state, f"{model_path.name} (model)")
        name = model_path.stem

    classifier = None
    if clf_state is not None:
        if clf_config is None:
            network, _ = classifier_network(clf_state, Path(classifier_path).name, parsed, config.data_shape[-1])
            n = network["out_channels"]
            clf_config = ClassifierConfig("unet-classifier", n, network,
                                          class_names=F.imagenet_class_names() if n == F.NUM_CLASSES else ())
        what = f"{Path(classifier_path).name if classifier_path else model_path.name} (classifier)"
        classifier = _build(clf_config.architecture, dict(clf_config.network), clf_state, what)
    bundle = ModelBundle(name, config, model, classifier, clf_config if classifier is not None else None,
                         device=target, precision=precision)
    return bundle.to(target)
