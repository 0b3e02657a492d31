"""guided-diffusion's command-line flags, parsed the way its scripts parse them, and turned into our
network keywords.

`parse_flags("--attention_resolutions 32,16,8 --class_cond True ...")` gives a frozen `Flags` that
holds every flag with guided-diffusion's `script_util` default where absent, and remembers which
flags were given. Sampling and training flags (respacing, scale, batch size, paths, learning rate, …)
do not change the networks: `parse_flags` skips them and `other_flags` returns them, so a README line
can be pasted whole and `sampling_settings` turns its sampling flags into settings for the panels.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import resources

from ..schedule import parse_respacing

NUM_CLASSES = 1000  # every class-conditional guided-diffusion checkpoint is ImageNet-1k

# script_util's default channel multipliers by image size (create_model / create_classifier).
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

# Flags of guided-diffusion's sampling scripts: they describe a run, not the networks.
SAMPLING = frozenset({
    "batch_size", "num_samples", "use_ddim", "clip_denoised", "model_path", "classifier_path",
    "classifier_scale", "timestep_respacing", "use_fp16", "classifier_use_fp16",
})
# Flags of its training scripts (and training-only model flags): nothing to do with sampling.
TRAINING = frozenset({
    "use_checkpoint", "use_kl", "rescale_learned_sigmas", "data_dir", "lr", "weight_decay", "iterations",
    "anneal_lr", "save_interval", "log_interval", "microbatch", "ema_rate", "resume_checkpoint",
    "schedule_sampler", "fp16_scale_growth", "noised", "val_data_dir", "eval_interval",
})
IGNORED = SAMPLING | TRAINING  # accepted in a pasted line; they do not change the networks

# Flags that fix the diffusion network's layout (when any is given, the flags define the network).
MODEL_LAYOUT = frozenset({
    "num_channels", "num_res_blocks", "attention_resolutions", "channel_mult", "class_cond",
    "learn_sigma", "use_scale_shift_norm", "resblock_updown",
})
CLASSIFIER_LAYOUT = frozenset({
    "classifier_width", "classifier_depth", "classifier_attention_resolutions",
    "classifier_use_scale_shift_norm", "classifier_resblock_updown", "classifier_pool",
})


@dataclass(frozen=True)
class Flags:
    """guided-diffusion's model, diffusion and classifier flags (script_util defaults)."""

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    num_heads: int = 4
    num_heads_upsample: int = -1
    num_head_channels: int = -1
    attention_resolutions: str = "16,8"
    channel_mult: str = ""
    dropout: float = 0.0
    class_cond: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    learn_sigma: bool = False
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    predict_xstart: bool = False
    rescale_timesteps: bool = False
    classifier_width: int = 128
    classifier_depth: int = 2
    classifier_attention_resolutions: str = "32,16,8"
    classifier_use_scale_shift_norm: bool = True
    classifier_resblock_updown: bool = True
    classifier_pool: str = "attention"
    given: frozenset[str] = field(default=frozenset(), compare=False)

    def replace(self, **changes: Any) -> "Flags":
        """A copy with `changes` applied and counted as given."""
        return dataclasses.replace(self, **changes, given=self.given | set(changes))

    def gives_any(self, names: frozenset[str]) -> bool:
        return bool(self.given & names)


_TYPES = {f.name: f.type for f in dataclasses.fields(Flags) if f.name != "given"}


def _bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("yes", "true", "t", "y", "1"):
        return True
    if lowered in ("no", "false", "f", "n", "0"):
        return False
    raise ValueError(f"--{name} takes True or False, not {text!r}.")


def _convert(name: str, text: str) -> Any:
    kind = _TYPES[name]
    if kind == "bool":
        return _bool(name, text)
    try:
        return {"int": int, "float": float, "str": str}[kind](text)
    except ValueError:
        raise ValueError(f"--{name} takes {'a whole number' if kind == 'int' else 'a number'}, not {text!r}.") from None


def _tokens(text: str) -> list[str]:
    """Shell words, with `NAME="--a 1 --b 2"` assignments unwrapped."""
    try:
        words = shlex.split(text)
        out: list[str] = []
        for word in words:
            head, eq, rest = word.partition("=")
            out.extend(shlex.split(rest) if eq and head.isidentifier() else [word])
    except ValueError as exc:
        raise ValueError(f"The flags could not be read: {exc}.") from None
    return out


def flag_pairs(text: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of `--name value` / `--name=value` words, in order, values as typed.

    Accepts shell quoting and `MODEL_FLAGS="..."` wrappers as copied from the README; ValueError for
    words that are not flags, flags without a value, and super-resolution flags.
    """
    tokens = _tokens(text)
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ValueError(f"Expected a flag such as --image_size, found {token!r}.")
        name, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise ValueError(f"The flag --{name} has no value.")
            value = tokens[i + 1]
            i += 1
        i += 1
        if name in ("large_size", "small_size"):
            raise ValueError("Super-resolution (upsampler) models are not supported; open a base model.")
        if name not in _TYPES and name not in IGNORED:
            raise ValueError(f"Unknown guided-diffusion flag --{name}.")
        pairs.append((name, value))
    return pairs


def parse_flags(text: str = "", base: Flags | None = None) -> Flags:
    """The model, diffusion and classifier flags in `text` on top of `base` (default: script_util
    defaults); sampling and training flags are skipped (see `other_flags`)."""
    changes = {name: _convert(name, value) for name, value in flag_pairs(text) if name not in IGNORED}
    return (base or Flags()).replace(**changes)


def other_flags(text: str) -> dict[str, str]:
    """The sampling and training flags in `text` (name → value as typed; the last one wins)."""
    return {name: value for name, value in flag_pairs(text) if name in IGNORED}


def _numbers(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated whole numbers, not {text!r}.") from None
    if not values:
        raise ValueError(f"{what} is empty.")
    return values


def attention_rates(resolutions: str, image_size: int) -> list[int]:
    """guided-diffusion's conversion of attention resolutions (32,16,8) to downsample rates (2,4,8)."""
    rates = []
    for res in _numbers(resolutions, "attention_resolutions"):
        if res < 1 or image_size % res:
            raise ValueError(f"Attention resolution {res} does not divide the image size {image_size}.")
        rates.append(image_size // res)
    return rates


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    try:
        return DEFAULT_CHANNEL_MULT[image_size]
    except KeyError:
        raise ValueError(f"guided-diffusion has no default channel_mult for {image_size}×{image_size} "
                         f"images (only {', '.join(map(str, DEFAULT_CHANNEL_MULT))}); give --channel_mult.") from None


def check_diffusion(flags: Flags) -> None:
    """Refuse settings our ε-prediction engine does not run."""
    if flags.predict_xstart:
        raise ValueError("Models that predict x0 (--predict_xstart True) are not supported; only ε-prediction.")
    if flags.rescale_timesteps:
        raise ValueError("--rescale_timesteps True is not supported (the published models do not use it).")
    if flags.noise_schedule not in ("linear", "cosine"):
        raise ValueError(f"Unknown noise schedule {flags.noise_schedule!r}; guided-diffusion has linear and cosine.")


def unet_network(flags: Flags) -> dict[str, Any]:
    """The `unet` keywords guided-diffusion's create_model builds from these flags."""
    size = flags.image_size
    mult = (default_channel_mult(size) if not flags.channel_mult
            else tuple(_numbers(flags.channel_mult, "channel_mult")))
    return dict(
        image_size=size, in_channels=3, model_channels=flags.num_channels,
        out_channels=6 if flags.learn_sigma else 3, num_res_blocks=flags.num_res_blocks,
        attention_resolutions=attention_rates(flags.attention_resolutions, size), dropout=flags.dropout,
        channel_mult=list(mult), conv_resample=True, num_classes=NUM_CLASSES if flags.class_cond else None,
        num_heads=flags.num_heads, num_head_channels=flags.num_head_channels,
        num_heads_upsample=flags.num_heads_upsample, use_scale_shift_norm=flags.use_scale_shift_norm,
        resblock_updown=flags.resblock_updown, use_new_attention_order=flags.use_new_attention_order,
    )


def classifier_network(flags: Flags) -> dict[str, Any]:
    """The `unet-classifier` keywords guided-diffusion's create_classifier builds from these flags."""
    size = flags.image_size
    return dict(
        image_size=size, in_channels=3, model_channels=flags.classifier_width, out_channels=NUM_CLASSES,
        num_res_blocks=flags.classifier_depth,
        attention_resolutions=attention_rates(flags.classifier_attention_resolutions, size),
        channel_mult=list(default_channel_mult(size)), num_head_channels=64,
        use_scale_shift_norm=flags.classifier_use_scale_shift_norm,
        resblock_updown=flags.classifier_resblock_updown, pool=flags.classifier_pool,
    )


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in label order (resources/imagenet_classes.txt)."""
    path = Path(resources.RESOURCES) / "imagenet_classes.txt"
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path} lists {len(names)} class names instead of {NUM_CLASSES}.")
    return names


# --- sampling flags → panel settings ---------------------------------------------------------------------

def _float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--{name} takes a number, not {text!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"--{name} must be a finite number, not {text!r}.")
    return value


def sampling_settings(other: dict[str, str], has_classifier: bool,
                      num_timesteps: int) -> tuple[dict[str, Any], list[str], list[str]]:
    """guided-diffusion's sampling flags as panel settings: (changes, what each applied flag set, flags
    that set nothing with the reason). ValueError for a value the panels cannot take (a respacing is
    checked against the model's `num_timesteps`)."""
    changes: dict[str, Any] = {}
    applied: list[str] = []
    unused: list[str] = []
    for name, value in other.items():
        flag = f"--{name} {value}"
        if name == "timestep_respacing":
            spec = value.strip().lower()
            if not spec:
                unused.append(f"{flag}: empty (all steps); the Steps box decides")
                continue
            try:
                parse_respacing(spec, num_timesteps)
            except ValueError as exc:
                raise ValueError(f"--timestep_respacing {value}: {exc}") from None
            changes["steps"] = spec
            applied.append(f"Steps = {spec} ({flag})")
        elif name == "use_ddim":
            ddim = _bool(name, value)
            changes["sampler"] = "ddim" if ddim else "ddpm"
            if ddim:
                changes["eta"] = 0.0
            applied.append(f"Sampler = {'DDIM, η = 0' if ddim else 'DDPM'} ({flag})")
        elif name == "classifier_scale":
            scale = _float(name, value)
            if not has_classifier:
                unused.append(f"{flag}: no classifier is chosen, so there is no classifier guidance")
                continue
            changes.update(guidance="classifier", scale=scale)
            applied.append(f"Guidance = classifier, s = {scale:g} ({flag})")
        elif name == "clip_denoised":
            clip = _bool(name, value)
            changes["clip"] = "clip" if clip else "none"
            applied.append(f"x̂0 clipping = {'clip to [−1, 1]' if clip else 'none'} ({flag})")
        elif name == "batch_size":
            try:
                batch = int(value)
            except ValueError:
                raise ValueError(f"--batch_size takes a whole number, not {value!r}.") from None
            if batch < 1:
                raise ValueError(f"--batch_size must be at least 1, not {batch}.")
            changes["batch"] = batch
            applied.append(f"Batch = {batch} ({flag})")
        elif name == "num_samples":
            unused.append(f"{flag}: a run samples one batch (set Batch in the sampler panel)")
        elif name in ("use_fp16", "classifier_use_fp16"):
            unused.append(f"{flag}: choose the precision in the Model panel (fp16 runs on CUDA only)")
        elif name in ("model_path", "classifier_path"):
            unused.append(f"{flag}: choose the files in the fields above")
        else:
            unused.append(f"{flag}: a training flag; it does not change sampling")
    return changes, applied, unused
