"""Model bundles: a network, its JSON-able config, and optionally a noise-aware classifier."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from .checks import finite, shown, text, whole
from .conditioning import Conditions
from .requests import CLIP_MODES, VARIANCES
from .schedule import SCHEDULES, Schedule

if TYPE_CHECKING:
    from .requests import SamplingRequest

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network and sample it.

    architecture: a key of `core.models.ARCHITECTURES`; network: its keyword arguments.
    data_shape: one sample, without the batch: (2,) for points, (C, H, W) for images.
    null_label: the network accepts label index `num_classes` as "no label" (classifier-free guidance).
    learn_sigma: the network outputs 2·C channels, ε then the `learned_range` interpolation v.
    clip: the default x̂0 handling ("clip" keeps images in [−1, 1]; points are not clipped).
    schedule: "linear" or "cosine" (guided-diffusion's), or "diffusers": ᾱ and the timestep selection come
    from the pipeline's scheduler config, kept in network["scheduler"] (core/diffusers).
    Latent models (diffusers VAEs): data_shape is the latent shape at the model's default image size.
    default_guidance_scale: the CFG strength the model's family samples with by default, as diffusers'
    `guidance_scale` γ = s_cfg = 1 + w (Stable Diffusion 7.5, DiT 4.0); None when the family has none.
    """

    architecture: str
    data_shape: tuple[int, ...]
    network: Mapping[str, Any] = field(default_factory=dict)
    schedule: str = "linear"
    num_timesteps: int = 1000
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    null_label: bool = False
    learn_sigma: bool = False
    variance: str = "fixed_small"
    clip: str = "clip"
    description: str = ""
    default_guidance_scale: float | None = None

    def __post_init__(self) -> None:
        text("The architecture", self.architecture)
        if not isinstance(self.data_shape, (list, tuple)) or not 1 <= len(self.data_shape) <= 4:
            raise ValueError(f"The sample shape must be 1 to 4 sizes, got {shown(self.data_shape)}.")
        object.__setattr__(self, "data_shape", tuple(whole("A sample size", d, 1, MAX_SIDE) for d in self.data_shape))
        object.__setattr__(self, "network", _record("The network settings", self.network))
        object.__setattr__(self, "class_names", _names(self.class_names))
        object.__setattr__(self, "num_timesteps", whole("The number of timesteps", self.num_timesteps, 1, MAX_TIMESTEPS))
        object.__setattr__(self, "num_classes", whole("The number of classes", self.num_classes, 0, MAX_CLASSES))
        for name in ("null_label", "learn_sigma"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {shown(getattr(self, name))}.")
        text("The description", self.description)
        if not isinstance(self.clip, str) or self.clip not in CLIP_MODES:
            raise ValueError(f"Unknown x̂0 clipping {shown(self.clip)}.")
        if not isinstance(self.schedule, str) or self.schedule not in (*SCHEDULES, "diffusers"):
            raise ValueError(f"Unknown noise schedule {self.schedule!r}.")
        if not isinstance(self.variance, str) or self.variance not in VARIANCES:
            raise ValueError(f"Unknown variance {shown(self.variance)}.")
        if self.variance == "learned_range" and not self.learn_sigma:
            raise ValueError("The learned_range variance needs a network that learns sigma.")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes.")
        if self.null_label and self.num_classes < 1:
            raise ValueError("A null label only makes sense for a class-conditional model.")
        gamma = self.default_guidance_scale
        if gamma is not None:
            finite("The default guidance scale γ", gamma, 0.0)

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    def class_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names else str(label)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        """The config `to_json` wrote (unknown keys are ignored); ValueError for anything else."""
        data = _json_record(text, "model configuration")
        known = {f.name for f in dataclasses.fields(cls)}
        if "architecture" not in data or "data_shape" not in data:
            raise ValueError("The model configuration names no architecture or sample shape.")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ClassifierConfig:
    """A noise-aware classifier p(y | x_t, t): architecture key, keyword arguments, class names.

    The names matter for an unconditional model guided by a classifier: they are the only names
    its target classes have.
    """

    architecture: str
    num_classes: int
    network: Mapping[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        text("The classifier's architecture", self.architecture)
        object.__setattr__(self, "num_classes", whole("The classifier's number of classes", self.num_classes,
                                                      1, MAX_CLASSES))
        object.__setattr__(self, "network", _record("The classifier's network settings", self.network))
        object.__setattr__(self, "class_names", _names(self.class_names))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a classifier of {self.num_classes} classes.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ClassifierConfig":
        """The config `to_json` wrote; ValueError for anything else."""
        data = _json_record(text, "classifier configuration")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "architecture" not in data or "num_classes" not in data:
            raise ValueError(f"The classifier configuration is incomplete or has unknown settings "
                             f"({shown(unknown[0]) if unknown else 'no architecture or classes'}).")
        return cls(**data)


MAX_SIDE = 65_536  # a sample size (channels, pixels, latent positions, point dimensions)
MAX_TIMESTEPS = 100_000
MAX_CLASSES = 1_000_000


def _json_record(text: Any, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ValueError(f"The {what} is not text.")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"The {what} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValueError(f"The {what} is not a record, got {shown(data)}.")
    return data


def _record(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must be a record, got {shown(value)}.")
    return dict(value)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"The class names must be a list of text, got {shown(value)}.")
    return tuple(value)


@dataclass(eq=False)
class ModelBundle:
    """A loaded model, ready to sample on `device`.

    model(x, t, y) → ε (B, C, …) or ε and v (B, 2C, …) when the config learns sigma; t holds original
    timesteps, y a condition batch (`core.conditioning`: labels with the null label = num_classes, or
    prompt embeddings) or None. classifier(x, t) → logits (B, K).
    """

    name: str
    config: ModelConfig
    model: nn.Module
    classifier: nn.Module | None = None
    classifier_config: ClassifierConfig | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    #: the network's forward compiled for the CPU (`core.compiled.attach`), used in its place where it fits
    compiled: Any = field(default=None, repr=False)

    #: the precisions each device type runs (others: fp32 only)
    PRECISIONS_ON: ClassVar[Mapping[str, tuple[str, ...]]] = {"cuda": ("fp32", "fp16", "bf16")}

    def __post_init__(self) -> None:
        self.check_precision(self.precision, self.device)
        if self.classifier is not None and self.config.num_classes and self.classifier_config is not None:
            if self.classifier_config.num_classes != self.config.num_classes:
                raise ValueError(
                    f"The classifier knows {self.classifier_config.num_classes} classes but the model "
                    f"{self.config.num_classes}."
                )

    @classmethod
    def check_precision(cls, precision: str, device: torch.device | str) -> None:
        """ValueError unless models of this kind run in `precision` on `device`."""
        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if precision not in cls.PRECISIONS_ON.get(torch.device(device).type, ("fp32",)):
            where = " or ".join(k.upper() for k, allowed in cls.PRECISIONS_ON.items() if precision in allowed)
            raise ValueError(f"{precision} runs only on {where}; use fp32 on {device}.")

    @property
    def num_targets(self) -> int:
        """How many classes guidance can target: the model's, or else its classifier's."""
        if self.config.num_classes:
            return self.config.num_classes
        return self.classifier_config.num_classes if self.classifier_config is not None else 0

    @property
    def target_names(self) -> tuple[str, ...]:
        """Names of the targetable classes (empty when they have none)."""
        if self.config.num_classes:
            return self.config.class_names
        return self.classifier_config.class_names if self.classifier_config is not None else ()

    @property
    def schedule(self) -> Schedule:
        return Schedule.from_name(self.config.schedule, self.config.num_timesteps)

    def sampling_schedule(self, steps: str, sampler: str = "ddim") -> Schedule:
        """The schedule a run of `steps` (a respacing spec) with `sampler` walks; families with their own
        timestep selection (diffusers schedulers, which differ between DDPM and DDIM) override this."""
        return self.schedule.respace(steps)

    @property
    def is_latent(self) -> bool:
        """Whether samples live in a latent space that `decode` turns into images (diffusers VAEs)."""
        return False

    @property
    def takes_prompt(self) -> bool:
        """Whether the model is conditioned on text (`request.prompt` / `negative_prompt`) instead of labels."""
        return False

    @property
    def size_choice(self) -> bool:
        """Whether a request may choose the image size (`request.width`/`height`, multiples of 8)."""
        return False

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) in pixels of the images a request without a size gets; None for 2-D points."""
        shape = self.config.data_shape
        return (shape[-1], shape[-2]) if len(shape) == 3 else None

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Samples → images in [−1, 1], (B, C, H, W): exact (the VAE for latent models; identity here)."""
        return x

    def preview(self, x: torch.Tensor) -> torch.Tensor:
        """Samples → a fast approximate picture for live views (latent models: a linear latent→RGB map);
        identity for pixel-space models."""
        return x

    def sample_shape(self, request: "SamplingRequest") -> tuple[int, ...]:
        """The shape of one sample of `request`, without the batch (latent models: from the image size)."""
        return self.config.data_shape

    def conditions(self, request: "SamplingRequest") -> Conditions:
        """Which condition batch each network pass gets (DESIGN.md, "Which prediction each guidance
        type starts from"); ValueError when the request does not fit the model."""
        cfg = self.config
        kind = request.guidance.kind
        labels = request.labels()
        if labels is not None:
            bad = [y for y in labels if not 0 <= y < self.num_targets]
            if bad:
                raise ValueError(f"Label {bad[0]} is out of range for {self.name!r} ({self.num_targets} classes).")
        if request.guidance.uses_classifier and self.classifier is None:
            raise ValueError(f"Classifier guidance needs a classifier, and {self.name!r} has none.")
        if request.guidance.uses_cfg and not cfg.null_label:
            raise ValueError(f"Classifier-free guidance needs a model with a null label; {self.name!r} has none.")
        needs_label = kind != "none" or (cfg.num_classes > 0 and not cfg.null_label)
        if needs_label and labels is None:
            raise ValueError(f"Choose a target class: {kind!r} guidance on {self.name!r} needs one.")
        target = None if labels is None else torch.tensor(labels, dtype=torch.long, device=self.device)
        null = None
        if cfg.null_label:
            null = torch.full((request.batch,), cfg.num_classes, dtype=torch.long, device=self.device)
        if cfg.num_classes == 0:
            base = None
        elif cfg.null_label:
            base = null
        else:
            base = target
        cond = target if cfg.num_classes > 0 else None
        return Conditions(base=base, cond=cond, null=null, target=target)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.precision == "fp32" else PRECISIONS[self.precision]

    def to(self, device: torch.device | str) -> "ModelBundle":
        """Move the networks to `device` (in place) and return self."""
        self.device = torch.device(device)
        self.compiled = None  # compiled for where the network was
        self.model.to(self.device)
        if self.classifier is not None:
            self.classifier.to(self.device)
        return self
