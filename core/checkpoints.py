"""Loading and saving model bundles.

The project's own format is one `.safetensors` file: tensors `model.*` and `classifier.*`, and the
JSON configs in its metadata. Nothing in it is pickled, so opening a file can never run code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .bundle import ClassifierConfig, ModelBundle, ModelConfig
from .fileio import atomic_save
from .models import build_network

FORMAT = "guidance-studio/1"


class CheckpointError(ValueError):
    """A file that cannot be loaded as the model it claims to be; the message says why."""


def load_state_checked(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Load `state` strictly, naming the first missing or unexpected key or mismatched shape."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"{what}: missing key {missing[0]!r} ({len(missing)} missing in all).")
    if unexpected:
        raise CheckpointError(f"{what}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all).")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{what}: {key!r} has shape {tuple(state[key].shape)} in the file, "
                f"but the model expects {tuple(value.shape)}."
            )
    module.load_state_dict(state, strict=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a bundle file, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file; is it damaged or truncated? ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a Guidance Studio bundle (no '{FORMAT}' metadata).")
    return meta


def save_bundle(bundle: ModelBundle, path: str | Path) -> Path:
    """Write `bundle` atomically (temporary file, then rename) and return the path."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    meta = {"format": FORMAT, "name": bundle.name, "config": bundle.config.to_json()}
    if bundle.classifier is not None and bundle.classifier_config is not None:
        tensors.update({f"classifier.{k}": v.detach().cpu().contiguous()
                        for k, v in bundle.classifier.state_dict().items()})
        meta["classifier_config"] = bundle.classifier_config.to_json()
    atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_bundle(path: str | Path, device: torch.device | str = "cpu", precision: str = "fp32") -> ModelBundle:
    """Read a bundle file; a CheckpointError names what is wrong with a bad one."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        config = ModelConfig.from_json(meta["config"])
        classifier_config = (ClassifierConfig.from_json(meta["classifier_config"])
                             if "classifier_config" in meta else None)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: its configuration is unreadable ({exc}).") from None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: the file is damaged or truncated ({exc}).") from None
    model = build_network(config.architecture, config.network)
    load_state_checked(model, _prefixed(tensors, "model."), f"{path.name} (model)")
    classifier = None
    if classifier_config is not None:
        classifier = build_network(classifier_config.architecture, classifier_config.network)
        load_state_checked(classifier, _prefixed(tensors, "classifier."), f"{path.name} (classifier)")
    if classifier is not None:
        classifier.eval()
    bundle = ModelBundle(meta.get("name", path.stem), config, model.eval(), classifier,
                         classifier_config, device=torch.device(device), precision=precision)
    return bundle.to(device)


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
