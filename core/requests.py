"""What to sample: frozen, validated request records (DESIGN.md, "Data flow").

A request says nothing about where it runs: the same request gives the same samples on any
device. It serialises to a flat JSON-able dict (PNG metadata, the library, the CLI).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .checks import finite, shown, text, whole

SAMPLERS = ("ddpm", "ddim")
GUIDANCE_KINDS = ("none", "classifier", "cfg", "both")
VARIANCES = ("fixed_small", "fixed_large", "learned_range")
CLIP_MODES = ("auto", "none", "clip", "dynamic")
MAX_IMAGE_SIDE = 4096
MAX_SEED = 2**63 - 1  # sample i uses seed + i in a torch.Generator, which takes 64-bit seeds
_STEPS_SPEC = re.compile(r"ddim[1-9]\d*|[1-9]\d*(,[1-9]\d*)*")


@dataclass(frozen=True)
class Guidance:
    """How sampling is steered.

    kind: `none`, `classifier` (scale s), `cfg` (weight w, ε̂ = (1+w)ε_c − w·ε_u) or `both`
    (CFG, then the classifier term). window: the fraction [start, end) of the run in which the
    guidance applies; outside it CFG falls back to the plain conditional prediction and the
    classifier term is dropped.
    """

    kind: str = "none"
    scale: float = 0.0
    weight: float = 0.0
    window: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in GUIDANCE_KINDS:
            raise ValueError(f"Unknown guidance {shown(self.kind)}; choose one of {', '.join(GUIDANCE_KINDS)}.")
        object.__setattr__(self, "scale", finite("The classifier scale s", self.scale))
        object.__setattr__(self, "weight", finite("The guidance weight w", self.weight))
        if isinstance(self.window, (str, bytes)) or not isinstance(self.window, (list, tuple)) or len(self.window) != 2:
            raise ValueError(f"The guidance window must be two fractions (start, end), got {shown(self.window)}.")
        start, end = (finite("The guidance window", v) for v in self.window)
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(
                f"The guidance window must satisfy 0 ≤ start < end ≤ 1, got ({start}, {end})."
            )
        object.__setattr__(self, "window", (start, end))

    @property
    def uses_classifier(self) -> bool:
        return self.kind in ("classifier", "both")

    @property
    def uses_cfg(self) -> bool:
        return self.kind in ("cfg", "both")

    def active_at(self, position: float) -> bool:
        """Whether guidance applies at `position` ∈ [0, 1): the fraction of the run already done."""
        start, end = self.window
        return start <= position < end


@dataclass(frozen=True)
class SamplingRequest:
    """One sampling run.

    steps: a guided-diffusion respacing spec ("50", "ddim50", "10,15,20"); an int N means "N".
    label: the target class of every sample, one class per sample, or None (unconditional).
    clip: x̂0 handling; "auto" is the model's default (clip for images, none for 2-D points).
    variance: DDPM variance; None is the model's own.
    prompt / negative_prompt: the text a prompt-conditioned model (Stable Diffusion) is guided to and
    away from; CFG's unconditional pass uses the negative prompt, or the empty prompt when it is "".
    width / height: the image size in pixels for models that sample any size (latent models; multiples
    of 8); None is the model's own size.
    """

    model: str
    sampler: str = "ddim"
    steps: str = "50"
    eta: float = 0.0
    guidance: Guidance = field(default_factory=Guidance)
    label: int | tuple[int, ...] | None = None
    seed: int = 0
    batch: int = 1
    clip: str = "auto"
    dynamic_percentile: float = 0.995
    variance: str | None = None
    prompt: str | None = None
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        text("The model name", self.model)
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {shown(self.sampler)}; choose one of {', '.join(SAMPLERS)}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, (str, int)):
            raise ValueError(f"Bad steps {shown(self.steps)}: use a step count like '50' or 'ddim50'.")
        object.__setattr__(self, "steps", str(self.steps).strip().lower())
        if not _STEPS_SPEC.fullmatch(self.steps):
            raise ValueError(
                f"Bad steps {shown(self.steps)}: use a step count like '50', 'ddim50', or sections like '10,15,20'."
            )
        eta = finite("η", self.eta)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"η must lie in [0, 1], got {eta}.")
        object.__setattr__(self, "eta", eta)
        if isinstance(self.guidance, Mapping):
            unknown = set(self.guidance) - {f.name for f in dataclasses.fields(Guidance)}
            if unknown:
                raise ValueError(f"Unknown guidance settings: {shown(', '.join(sorted(map(str, unknown))))}.")
            object.__setattr__(self, "guidance", Guidance(**self.guidance))
        elif not isinstance(self.guidance, Guidance):
            raise ValueError(f"The guidance must be a record of kind, scale, weight and window, "
                             f"got {shown(self.guidance)}.")
        object.__setattr__(self, "batch", whole("The batch size", self.batch, 1))
        object.__setattr__(self, "seed", whole("The seed", self.seed, 0, MAX_SEED - self.batch + 1))
        if isinstance(self.label, (list, tuple)):
            object.__setattr__(self, "label", tuple(whole("A label", v, 0) for v in self.label))
            if len(self.label) != self.batch:
                raise ValueError(f"Got {len(self.label)} labels for a batch of {self.batch}.")
        elif self.label is not None:
            object.__setattr__(self, "label", whole("The label", self.label, 0))
        if not isinstance(self.clip, str) or self.clip not in CLIP_MODES:
            raise ValueError(f"Unknown x̂0 clipping {shown(self.clip)}; choose one of {', '.join(CLIP_MODES)}.")
        if not 0.5 <= finite("The dynamic-thresholding percentile", self.dynamic_percentile) <= 1.0:
            raise ValueError("The dynamic-thresholding percentile must lie in [0.5, 1].")
        if self.variance is not None and (not isinstance(self.variance, str) or self.variance not in VARIANCES):
            raise ValueError(f"Unknown variance {shown(self.variance)}; choose one of {', '.join(VARIANCES)}.")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ValueError("The prompt must be text.")
        if not isinstance(self.negative_prompt, str):
            raise ValueError("The negative prompt must be text.")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            value = whole(f"The image {name}", value)
            if not 8 <= value <= MAX_IMAGE_SIDE or value % 8:
                raise ValueError(f"The image {name} must be a multiple of 8 from 8 to {MAX_IMAGE_SIDE}, got {value}.")
            object.__setattr__(self, name, value)

    def labels(self) -> tuple[int, ...] | None:
        """The target class of each sample, or None."""
        if self.label is None:
            return None
        if isinstance(self.label, tuple):
            return self.label
        return (self.label,) * self.batch

    def unguided(self) -> "SamplingRequest":
        """The same run with guidance switched off (w = s = 0): under CFG the plain conditional model,
        under classifier guidance the prediction it starts from. Its samples are the unguided twin's."""
        kind = "cfg" if self.guidance.uses_cfg else "none"
        return self.replace(guidance=Guidance(kind))

    def replace(self, **changes: Any) -> "SamplingRequest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `from_dict` inverts it."""
        out = dataclasses.asdict(self)
        out["guidance"]["window"] = list(self.guidance.window)
        if isinstance(self.label, tuple):
            out["label"] = list(self.label)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SamplingRequest":
        """The request `to_dict` wrote; ValueError (one sentence) for anything that is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"The sampling settings must be a record, got {shown(data)}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown sampling settings: {shown(', '.join(sorted(map(str, unknown))))}.")
        if "model" not in data:
            raise ValueError("The sampling settings do not name a model.")
        return cls(**data)
