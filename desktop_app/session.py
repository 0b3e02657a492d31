"""The studio's settings as a Qt-free model: widgets read and write it, runs are built from it.

`Session` holds one frozen `Settings` record and the capabilities of the loaded model. It knows
which controls apply (with the reason when one does not), builds the `core.SamplingRequest` of a
run, and restores itself from a request (part B reopens PNGs through `apply_request`).
Importing this module does not import torch: the window is shown before the engine loads.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import limits

if TYPE_CHECKING:  # core pulls in torch; only `request()` needs it, lazily
    from core import SamplingRequest

GUIDANCE_LABELS = {
    "none": "None",
    "classifier": "Classifier",
    "cfg": "Classifier-free",
    "both": "Both (CFG + classifier)",
}
SAMPLERS = ("ddim", "ddpm")
CLIP_MODES = ("auto", "none", "clip", "dynamic")
PRECISIONS = ("fp32", "fp16", "bf16")
DEVICES = ("auto", "cuda", "mps", "cpu")
MAX_SIDE = 4096  # core.requests.MAX_IMAGE_SIDE (not imported: that would load torch before the window shows)


@dataclass(frozen=True)
class ModelCaps:
    """What the settings need to know about a model, read from its info or its bundle.

    data_shape: one sample, (2,) for points or (C, H, W) for images. num_classes / class_names:
    the classes guidance can target (the model's, or an unconditional model's classifier's).
    source: the file it came from (None for a built-in loaded by name).
    default_gamma: the family's default CFG strength as γ = 1 + w (diffusers' guidance_scale), or None.
    schedule: the noise schedule in words ("cosine, 1000 steps"); "" when unknown.
    takes_prompt: guided by a text prompt and negative prompt (Stable Diffusion) instead of class labels.
    size_choice: a run may choose the image size (width and height, multiples of 8); image_size: the
    (width, height) the model makes by default, None for 2-D points. is_latent: samples are latents that
    the model's VAE decodes.
    """

    name: str
    data_shape: tuple[int, ...]
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    null_label: bool = False
    has_classifier: bool = False
    description: str = ""
    source: str | None = None
    default_gamma: float | None = None
    schedule: str = ""
    takes_prompt: bool = False
    size_choice: bool = False
    image_size: tuple[int, int] | None = None
    is_latent: bool = False

    @property
    def is_points(self) -> bool:
        return len(self.data_shape) == 1

    def class_name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else f"class {index}"

    @classmethod
    def from_info(cls, info: Any) -> "ModelCaps":
        """From a `core.registry.ModelInfo`."""
        return cls(info.name, tuple(info.data_shape), info.num_targets, tuple(info.class_names),
                   bool(info.null_label), bool(info.has_classifier), info.description,
                   None)

    @classmethod
    def from_bundle(cls, bundle: Any, source: str | None = None) -> "ModelCaps":
        """From a loaded `core.ModelBundle`."""
        cfg = bundle.config
        size = bundle.image_size
        # a pipeline's description states its scheduler's schedule in full (core.diffusers)
        schedule = "" if cfg.schedule == "diffusers" else f"{cfg.schedule} schedule, {cfg.num_timesteps} steps"
        return cls(bundle.name, tuple(cfg.data_shape), bundle.num_targets, tuple(bundle.target_names),
                   bool(cfg.null_label), bundle.classifier is not None, cfg.description, source,
                   cfg.default_guidance_scale, schedule, bool(bundle.takes_prompt), bool(bundle.size_choice),
                   None if size is None else (int(size[0]), int(size[1])), bool(bundle.is_latent))


@dataclass(frozen=True)
class Settings:
    """Every user setting of the studio, as plain JSON-able values.

    batch_points / batch_images: the batch size for 2-D and image models (a good size differs by
    orders of magnitude). window_start / window_end: fractions of the run in which guidance applies,
    used only when window_on. exact_curves: the classifier's p(y | x_t) at every step of a run rather
    than within a small time budget (it does not change the samples). maps / twin: record the guidance
    maps / sample the unguided twin too. exact_decode: a latent model's x̂0 decoded by its VAE at every
    step rather than for the frames on screen within a time budget. prompt / negative_prompt: the text
    of prompt models; width / height: the image size in pixels of models that let a run choose it
    (multiples of 8). watch / watch_rate: pace a run at no more than watch_rate steps a second, so a
    fast model can be followed by eye. batches: the batch each model was last used with (model name →
    batch), so returning to a model brings its own batch back (`Session.set_caps`).
    """

    model: str = "toy-gmm"
    device: str = "auto"
    precision: str = "fp32"
    sampler: str = "ddim"
    steps: str = "50"
    eta: float = 0.0
    seed: int = 0
    batch_points: int = 1000
    batch_images: int = 16
    clip: str = "auto"
    guidance: str = "none"
    class_index: int = 0
    scale: float = 1.0
    weight: float = 2.0
    window_on: bool = False
    window_start: float = 0.0
    window_end: float = 1.0
    exact_curves: bool = False
    maps: bool = True
    twin: bool = False
    exact_decode: bool = False
    watch: bool = False
    watch_rate: int = 20
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    batches: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        """Tolerant of old or foreign keys: unknown ones are dropped, bad values fall back to defaults."""
        return cls.parse(data)[0]

    @classmethod
    def parse(cls, data: Any) -> tuple["Settings", list[str]]:
        """(settings, notes) from a stored record (the last session's settings file). Unknown keys are
        dropped; a value of the wrong type, out of its range (`limits`) or not among its choices falls
        back to the default, and `notes` names each such setting with the value that was refused."""
        defaults = cls()
        if not isinstance(data, Mapping):
            return defaults, [f"all (not a record: {_short(data)})"]
        values: dict[str, Any] = {}
        notes: list[str] = []
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            raw = data[f.name]
            if f.name == "batches":
                batches, refused = _stored_batches(raw)
                values["batches"] = batches
                notes += [f"batch of {name!r} ({_short(v)})" for name, v in refused]
                continue
            value = _stored(raw, getattr(defaults, f.name))
            limit = limits.SETTINGS.get(f.name)
            if value is None or (limit is not None and limit.problem(value)) or \
                    value not in _CHOICES.get(f.name, (value,)):
                notes.append(f"{f.name} ({_short(raw)})")
            else:
                values[f.name] = value
        settings = dataclasses.replace(defaults, **values)
        for name in ("width", "height"):
            if not _valid_side(getattr(settings, name)):
                notes.append(f"{name} ({getattr(settings, name)})")
                settings = dataclasses.replace(settings, **{name: getattr(defaults, name)})
        if settings.window_start >= settings.window_end:
            notes.append(f"window ({settings.window_start}, {settings.window_end})")
            settings = dataclasses.replace(settings, window_start=defaults.window_start,
                                           window_end=defaults.window_end)
        return settings, notes


_CHOICES = {"sampler": SAMPLERS, "clip": CLIP_MODES, "precision": PRECISIONS, "device": DEVICES,
            "guidance": tuple(GUIDANCE_LABELS)}


def _stored(raw: Any, default: Any) -> Any:
    """`raw` as the type of `default` (numbers may come as numeric text), or None when it is not one."""
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else None
    if isinstance(default, str):
        return raw if isinstance(raw, str) else None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        number = float(raw) if isinstance(default, float) else int(raw)
    except (ValueError, OverflowError):
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if isinstance(raw, float) and isinstance(default, int) and not raw.is_integer():
        return None
    return number


def _stored_batches(raw: Any) -> tuple[dict[str, int], list[tuple[str, Any]]]:
    """(model → batch, refused (model, value) pairs) from a stored record: any batch a panel accepts."""
    if not isinstance(raw, Mapping):
        return {}, [("all", raw)]
    kept, refused = {}, []
    most = max(limits.BATCH_POINTS.high, limits.BATCH_IMAGES.high)
    for name, value in raw.items():
        number = _stored(value, 0)
        if isinstance(name, str) and number is not None and 1 <= number <= most:
            kept[name] = number
        else:
            refused.append((str(name), value))
    return kept, refused


def _short(value: Any, width: int = 24) -> str:
    try:
        text = repr(value)
    except ValueError:
        text = "a huge number"
    return text if len(text) <= width else f"{text[:width]}…"


def _valid_side(value: int) -> bool:
    """An image side a run can take: a multiple of 8 from 8 to 4096 pixels (core.requests)."""
    return 8 <= value <= MAX_SIDE and value % 8 == 0


Listener = Callable[["Session"], None]


class Session:
    """The current settings plus the loaded model's capabilities; notifies listeners on change."""

    def __init__(self, settings: Settings | None = None):
        self._settings = settings or Settings()
        self._caps: ModelCaps | None = None
        self._devices: tuple[str, ...] | None = None  # unknown until the engine has loaded
        self._listeners: list[Listener] = []

    # --- state ---------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def caps(self) -> ModelCaps | None:
        return self._caps

    @property
    def devices(self) -> tuple[str, ...]:
        return self._devices or ("cpu",)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    def update(self, **changes: Any) -> None:
        """Change some settings (names of `Settings` fields); notifies only when something changed."""
        new = self._coerce(dataclasses.replace(self._settings, **changes))
        if new != self._settings:
            self._settings = new
            self._notify()

    def set_caps(self, caps: ModelCaps | None) -> None:
        """The model now loaded; settings that no longer apply fall back to ones that do.

        Switching to a model whose family has a default CFG strength (Stable Diffusion γ 7.5, DiT 4.0)
        starts it with classifier-free guidance at that strength, and one that lets a run choose the image
        size starts at its own size; reloading the same model keeps the user's settings.
        """
        previous = self._caps
        self._caps = caps
        if caps is not None and previous is not None and caps.name != previous.name:
            self._settings = self._switch_batch(previous, caps)
        if caps is not None:
            if caps.name != self._settings.model and caps.default_gamma is not None:
                self._settings = dataclasses.replace(self._settings, guidance="cfg", weight=caps.default_gamma - 1)
            if caps.name != self._settings.model and caps.size_choice and caps.image_size is not None:
                self._settings = dataclasses.replace(self._settings, width=caps.image_size[0],
                                                     height=caps.image_size[1])
            self._settings = dataclasses.replace(self._settings, model=caps.name)
        self._settings = self._coerce(self._settings)
        self._notify()

    def set_devices(self, devices: tuple[str, ...] | list[str]) -> None:
        """The device kinds present on this machine (from `core.device.available_devices`)."""
        self._devices = tuple(devices)
        self._settings = self._coerce(self._settings)
        self._notify()

    def _switch_batch(self, previous: ModelCaps, caps: ModelCaps) -> Settings:
        """Remember the outgoing model's batch and bring back the incoming one's, so that returning to a
        2-D model brings back its 1000 points, not the 16 another 2-D model was last run with (a model
        never used before starts with the last batch of its kind)."""
        s = self._settings
        own = s.batch_points if previous.is_points else s.batch_images
        batches = {**s.batches, previous.name: own}
        field = "batch_points" if caps.is_points else "batch_images"
        return dataclasses.replace(s, batches=batches, **{field: batches.get(caps.name, getattr(s, field))})

    @property
    def batch(self) -> int:
        caps = self._caps
        return self._settings.batch_points if caps is None or caps.is_points else self._settings.batch_images

    def set_batch(self, batch: int) -> None:
        field = "batch_points" if self._caps is None or self._caps.is_points else "batch_images"
        self.update(**{field: int(batch)})

    def apply_sampling(self, changes: Mapping[str, Any]) -> None:
        """Settings asked for by an opened model's sampling flags (`core.model_plan` vocabulary:
        sampler, steps, eta, guidance, scale, weight, clip, batch)."""
        fields = {f.name for f in dataclasses.fields(Settings)}
        values = {k: v for k, v in changes.items() if k in fields}
        if "batch" in changes:
            points = self._caps is None or self._caps.is_points
            values["batch_points" if points else "batch_images"] = int(changes["batch"])
        self.update(**values)

    def _coerce(self, s: Settings) -> Settings:
        """Replace values the model or machine cannot use by ones it can."""
        reasons = self._reasons(s)
        if self._caps is not None and reasons.get(f"guidance:{s.guidance}"):  # unknown model: keep
            s = dataclasses.replace(s, guidance="none")
        if self._devices is not None and reasons.get(f"device:{s.device}"):
            s = dataclasses.replace(s, device="auto")
        if self._devices is not None and self._reasons(s).get(f"precision:{s.precision}"):
            s = dataclasses.replace(s, precision="fp32")
        for name in ("width", "height"):
            if not _valid_side(getattr(s, name)):
                s = dataclasses.replace(s, **{name: getattr(self._settings, name)})
        caps = self._caps
        if caps is not None and caps.num_classes and not 0 <= s.class_index < caps.num_classes:
            s = dataclasses.replace(s, class_index=0)
        return s

    # --- what applies --------------------------------------------------------------------------

    def resolved_device(self, s: Settings | None = None) -> str:
        s = s or self._settings
        return self.devices[0] if s.device == "auto" else s.device

    def availability(self) -> dict[str, str | None]:
        """For each control key, None when it applies, else a sentence saying why it does not.

        Keys: guidance:<kind>, device:<kind>, precision:<p>, class, scale, weight, window, eta, twin, maps,
        exact_decode, prompt, negative_prompt, size, start.
        """
        return self._reasons(self._settings)

    def _reasons(self, s: Settings) -> dict[str, str | None]:
        caps = self._caps
        name = caps.name if caps else "the model"
        no_classifier = None if caps and caps.has_classifier else (
            f"Classifier guidance needs a noise-aware classifier; {name} has none.")
        no_null = None if caps and (caps.null_label or caps.takes_prompt) else (
            f"Classifier-free guidance needs a model trained with a null label; {name} has none.")
        out: dict[str, str | None] = {
            "guidance:none": None,
            "guidance:classifier": no_classifier,
            "guidance:cfg": no_null,
            "guidance:both": no_classifier or no_null,
        }
        for kind in DEVICES:
            out[f"device:{kind}"] = None if kind == "auto" or kind in self.devices else (
                f"No {kind.upper()} device is available on this machine.")
        on_cuda = self.resolved_device(s) == "cuda"
        for p in PRECISIONS:
            out[f"precision:{p}"] = None if p == "fp32" or on_cuda else f"{p} runs only on a CUDA GPU."
        if caps and caps.takes_prompt:
            out["class"] = f"{name} is guided by the prompt, not by a class."
        else:
            out["class"] = None if caps and caps.num_classes else "This model is unconditional: it has no classes."
        out["exact_decode"] = None if caps and caps.is_latent else (
            f"{name} samples pixels: its x̂0 is shown exactly at every step already.")
        no_text = None if caps and caps.takes_prompt else f"{name} is not guided by text."
        out["prompt"] = no_text
        out["negative_prompt"] = no_text
        if caps and caps.size_choice:
            out["size"] = None
        elif caps and caps.image_size is not None:
            out["size"] = f"{name} makes {caps.image_size[0]}×{caps.image_size[1]} images only."
        else:
            out["size"] = f"{name} makes no images of a size to choose."
        out["scale"] = None if s.guidance in ("classifier", "both") else (
            "The classifier scale s applies only to classifier guidance (or both).")
        out["weight"] = None if s.guidance in ("cfg", "both") else (
            "The guidance weight w applies only to classifier-free guidance (or both).")
        out["window"] = None if s.guidance != "none" else "A guidance window needs some guidance."
        out["eta"] = None if s.sampler == "ddim" else "η applies only to DDIM (DDPM is always fully stochastic)."
        out["twin"] = None if s.guidance != "none" else "Without guidance the twin would be the run itself."
        out["maps"] = None if caps is None or not caps.is_points else (
            "2-D models show guidance as arrows (Guidance dock), not maps.")
        out["start"] = None if caps is not None else "No model is loaded yet."
        return out

    # --- requests ------------------------------------------------------------------------------

    def request(self) -> "SamplingRequest":
        """The run the current settings describe; ValueError with a readable sentence if they are bad."""
        from core import Guidance, SamplingRequest

        s, caps = self._settings, self._caps
        if caps is None:
            raise ValueError("No model is loaded yet.")
        window = (s.window_start, s.window_end) if s.window_on and s.guidance != "none" else (0.0, 1.0)
        guidance = Guidance(kind=s.guidance, scale=s.scale, weight=s.weight, window=window)
        label = s.class_index if caps.num_classes else None
        text = dict(prompt=s.prompt, negative_prompt=s.negative_prompt) if caps.takes_prompt else {}
        size = dict(width=s.width, height=s.height) if caps.size_choice else {}
        return SamplingRequest(model=caps.name, sampler=s.sampler, steps=s.steps,
                               eta=s.eta if s.sampler == "ddim" else 0.0, guidance=guidance, label=label,
                               seed=s.seed, batch=self.batch, clip=s.clip, **text, **size)

    def validation_error(self) -> str | None:
        """Why `request()` would fail, or None."""
        try:
            self.request()
        except ValueError as exc:
            return str(exc)
        return None

    def check_request(self, request: "SamplingRequest", model_name: str | None = None) -> None:
        """ValueError (one sentence) when `request` holds a value the panels could not show (`limits`).

        The batch limit depends on the kind of model: the loaded one's if it is `model_name`, else the
        larger limit of the two (`apply_request` checks again once that model is loaded).
        """
        caps = self._caps
        known = caps is not None and caps.name == (model_name or request.model)
        batch = limits.batch_limit(caps.is_points if known else None)
        g = request.guidance
        checks = [(limits.SEED, request.seed), (batch, request.batch), (limits.ETA, request.eta),
                  (limits.SCALE, g.scale), (limits.WEIGHT, g.weight)]
        if tuple(g.window) != (0.0, 1.0):
            checks += [(limits.WINDOW_START, g.window[0]), (limits.WINDOW_END, g.window[1])]
        targets = request.label if isinstance(request.label, tuple) else (request.label,)
        for label in sorted({t for t in targets if t is not None})[-1:]:  # the largest label is the one to check
            checks.append((limits.CLASS_INDEX, label))
            if known and caps.num_classes:
                checks.append((dataclasses.replace(limits.CLASS_INDEX, high=caps.num_classes - 1), label))
        problems = [p for limit, value in checks if (p := limit.problem(value))]
        if problems:
            raise ValueError(f"These settings cannot be used: {problems[0]}")

    def apply_request(self, request: "SamplingRequest", model_name: str | None = None) -> None:
        """Take every setting from `request` (e.g. one read back from a PNG); ValueError (and nothing
        changed) when one is outside the panels' limits."""
        self.check_request(request, model_name)
        label = request.label[0] if isinstance(request.label, tuple) else request.label
        g = request.guidance
        window_on = tuple(g.window) != (0.0, 1.0)
        changes: dict[str, Any] = dict(
            model=model_name or request.model, sampler=request.sampler, steps=request.steps,
            eta=request.eta, seed=request.seed, clip=request.clip, guidance=g.kind,
            class_index=label if label is not None else self._settings.class_index,
            scale=g.scale, weight=g.weight, window_on=window_on,
            prompt=request.prompt if request.prompt is not None else self._settings.prompt,
            negative_prompt=request.negative_prompt if request.prompt is not None else self._settings.negative_prompt,
            width=request.width or self._settings.width, height=request.height or self._settings.height,
            window_start=g.window[0] if window_on else self._settings.window_start,
            window_end=g.window[1] if window_on else self._settings.window_end,
        )
        points = self._caps.is_points if self._caps is not None else True
        changes["batch_points" if points else "batch_images"] = request.batch
        self._settings = dataclasses.replace(self._settings, **changes)
        if self._caps is not None and self._caps.name == self._settings.model:
            self._settings = self._coerce(self._settings)
        self._notify()

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return self._settings.to_dict()

    def load_dict(self, data: Any) -> list[str]:
        """Restore stored settings; returns the notes of `Settings.parse` (settings that fell back)."""
        settings, notes = Settings.parse(data)
        self._settings = self._coerce(settings)
        self._notify()
        return notes
