"""The models a user can pick: the analytic `toy-gmm` and the bundles under resources/models/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from resources import MODELS

from .bundle import ClassifierConfig, ModelBundle, ModelConfig
from .checkpoints import load_bundle, read_metadata
from .device import resolve_device

DEFAULT_MODEL = "toy-gmm"

_GMM_NETWORK = {"num_components": 8, "radius": 1.0, "std": 0.1, "schedule": "linear", "num_timesteps": 1000}
TOY_GMM = ModelConfig(
    architecture="gmm",
    data_shape=(2,),
    network=_GMM_NETWORK,
    num_classes=8,
    class_names=tuple(f"component {k}" for k in range(8)),
    null_label=True,
    clip="none",
    description="Analytic 2-D mixture of 8 Gaussians (std 0.1) on the unit circle: exact scores and classifier.",
)
TOY_GMM_CLASSIFIER = ClassifierConfig("gmm-classifier", 8, _GMM_NETWORK)


@dataclass(frozen=True)
class ModelInfo:
    """What the model list shows, read without loading any weights."""

    name: str
    description: str
    data_shape: tuple[int, ...]
    num_classes: int  # the model's own classes (0: unconditional)
    num_targets: int  # classes guidance can target: the model's, or else its classifier's
    class_names: tuple[str, ...]  # names of the targetable classes
    null_label: bool
    has_classifier: bool
    path: Path | None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "description": self.description, "data_shape": list(self.data_shape),
            "num_classes": self.num_classes, "num_targets": self.num_targets, "null_label": self.null_label,
            "has_classifier": self.has_classifier, "path": str(self.path) if self.path else None,
        }


def _info(name: str, config: ModelConfig, classifier: ClassifierConfig | None, path: Path | None) -> ModelInfo:
    if config.num_classes or classifier is None:
        targets, names = config.num_classes, config.class_names
    else:
        targets, names = classifier.num_classes, classifier.class_names
    return ModelInfo(name, config.description, config.data_shape, config.num_classes, targets, names,
                     config.null_label, classifier is not None, path)


def list_models(folder: Path = MODELS) -> list[ModelInfo]:
    """The analytic model, then every bundle in `folder`, by name."""
    infos = [_info(DEFAULT_MODEL, TOY_GMM, TOY_GMM_CLASSIFIER, None)]
    for path in sorted(folder.glob("*.safetensors")):
        meta = read_metadata(path)
        classifier = ClassifierConfig.from_json(meta["classifier_config"]) if "classifier_config" in meta else None
        infos.append(_info(meta.get("name", path.stem), ModelConfig.from_json(meta["config"]), classifier, path))
    return infos


def model_path(name_or_path: str | Path) -> Path | None:
    """The file (or diffusers pipeline folder) behind a model name or path (None for the analytic toy-gmm); a
    ValueError for an unknown name."""
    if str(name_or_path) == DEFAULT_MODEL:
        return None
    path = Path(name_or_path)
    if path.suffix or path.is_dir():
        return path
    for info in list_models():
        if info.name == str(name_or_path) and info.path is not None:
            return info.path
    known = ", ".join(i.name for i in list_models())
    raise ValueError(f"No model called {name_or_path!r}; available: {known}.")


def load_model(name_or_path: str | Path, device: str = "auto", precision: str = "fp32") -> ModelBundle:
    """A built-in model by name, a bundle or checkpoint file by path, or a diffusers pipeline folder, on
    `device`."""
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    if str(name_or_path) == DEFAULT_MODEL:
        from .models import build_network

        bundle = ModelBundle(DEFAULT_MODEL, TOY_GMM, build_network("gmm", _GMM_NETWORK),
                             build_network("gmm-classifier", _GMM_NETWORK), TOY_GMM_CLASSIFIER,
                             device=target, precision=precision)
        return bundle.to(target)
    path = model_path(name_or_path)
    if path.is_dir():  # a diffusers pipeline folder (model_index.json)
        from .diffusers import load_pipeline

        return load_pipeline(path, device=target, precision=precision)
    if not path.exists():
        raise ValueError(f"No such model file: {path}.")
    from .diffusers.single_file import is_single_file_checkpoint

    if is_single_file_checkpoint(path):  # Stable Diffusion in one file (.ckpt, or UNet under model.diffusion_model.)
        from .diffusers import load_single_file

        return load_single_file(path, device=target, precision=precision)
    if path.suffix != ".safetensors":  # a third-party checkpoint (guided-diffusion .pt)
        from .guided_diffusion import load_checkpoint

        return load_checkpoint(path, device=target, precision=precision)
    return load_bundle(path, target, precision)
