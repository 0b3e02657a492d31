"""What loading a guided-diffusion model (and classifier) will use, and where each value comes from.

The weights fix the layout; what they cannot tell (image size, attention heads and order, the noise
schedule) comes from the flags, else the preset for the file name (when its layout matches the
weights), else the classifier's attention pool (image size only), else guided-diffusion's defaults —
and a default the weights cannot confirm gets a warning. Layout flags are checked against the weights:
a disagreement names the flag and both values. When the weights' layout cannot be inferred, the flags
define it. Sampling flags (`--timestep_respacing ddim25 --classifier_scale 3`) become settings for the
panels.

`plan_checkpoint` is pure (state dicts in, decisions out) and is what `load_checkpoint` builds from;
`plan_files` reads shapes only, for the Open-model dialog.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..bundle import ClassifierConfig, ModelConfig
from ..checkpoints import CheckpointError, read_metadata
from ..model_plan import BUNDLE, CLASSIFIER, GUIDED_DIFFUSION, MODEL, LoadPlan, Setting
from . import flags as F
from .files import is_bundle, read_shapes
from .infer import infer_classifier, infer_unet, is_unet
from .presets import classifier_preset, model_preset

State = dict[str, Tensor]
# Flags a bundle's own config settles (it says nothing of heads: its network keywords hold them).
BUNDLE_FIXED = F.MODEL_LAYOUT | {"num_heads", "num_head_channels", "num_heads_upsample", "use_new_attention_order"}
WEIGHTS = "the weights"
GIVEN = "your flags"
DEFAULT = "guided-diffusion's default"
IN_FILE = "the file"


@dataclass
class Decisions:
    """What the loader builds: the networks' keywords, the diffusion facts, and the plan shown to the user.

    network: `unet` keywords (None for a bundle model: it carries its own config). facts: the flags in
    force (schedule, steps). classifier_network: `unet-classifier` keywords (None without a classifier
    or for a bundle classifier). description: the model's one-line description (states the schedule).
    """

    network: dict[str, Any] | None = None
    facts: F.Flags = field(default_factory=F.Flags)
    classifier_network: dict[str, Any] | None = None
    description: str = ""
    settings: list[Setting] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None


def _source(name: str, flags: F.Flags, preset: F.Flags | None, preset_name: str) -> str:
    if name in flags.given:
        return GIVEN
    if preset is not None and name in preset.given:
        return f"the preset for {preset_name}"
    return DEFAULT


def _resolutions(rates: list[int], size: int) -> str:
    return ",".join(str(size // r) for r in sorted(rates))


def _mult_text(mult: list[float]) -> str:
    return ",".join(f"{m:g}" for m in mult)


def _mismatch(flag: str, in_file: Any, in_flags: Any, where: str = "in the file") -> str:
    return f"{flag}: {in_file} {where}, {in_flags} in your flags"


def _check_unet(inferred: dict[str, Any], flags: F.Flags, size: int) -> list[str]:
    """Given model-layout flags that disagree with the weights, one sentence each."""
    found = []
    out_sigma = inferred["out_channels"] == 2 * inferred["in_channels"]
    pairs = {
        "num_channels": (inferred["model_channels"], flags.num_channels),
        "num_res_blocks": (inferred["num_res_blocks"], flags.num_res_blocks),
        "class_cond": (inferred.get("num_classes") is not None, flags.class_cond),
        "learn_sigma": (out_sigma, flags.learn_sigma),
        "use_scale_shift_norm": (inferred["use_scale_shift_norm"], flags.use_scale_shift_norm),
        "resblock_updown": (inferred["resblock_updown"], flags.resblock_updown),
    }
    for name, (in_file, in_flags) in pairs.items():
        if name in flags.given and in_file != in_flags:
            found.append(_mismatch(name, in_file, in_flags))
    if "channel_mult" in flags.given and flags.channel_mult:
        mult = [float(m) for m in F._numbers(flags.channel_mult, "channel_mult")]
        if mult != [float(m) for m in inferred["channel_mult"]]:
            found.append(_mismatch("channel_mult", _mult_text(inferred["channel_mult"]), _mult_text(mult)))
    if "attention_resolutions" in flags.given:
        rates = F.attention_rates(flags.attention_resolutions, size)
        if sorted(rates) != sorted(inferred["attention_resolutions"]):
            in_file = _resolutions(inferred["attention_resolutions"], size) or "none"
            found.append(_mismatch("attention_resolutions", in_file, _resolutions(rates, size)))
    return found


def _check_classifier(inferred: dict[str, Any], flags: F.Flags, size: int) -> list[str]:
    found = []
    pairs = {
        "classifier_width": (inferred["model_channels"], flags.classifier_width),
        "classifier_depth": (inferred["num_res_blocks"], flags.classifier_depth),
        "classifier_use_scale_shift_norm": (inferred["use_scale_shift_norm"], flags.classifier_use_scale_shift_norm),
        "classifier_resblock_updown": (inferred["resblock_updown"], flags.classifier_resblock_updown),
        "classifier_pool": (inferred["pool"], flags.classifier_pool),
    }
    for name, (in_file, in_flags) in pairs.items():
        if name in flags.given and in_file != in_flags:
            found.append(_mismatch(name, in_file, in_flags))
    if "classifier_attention_resolutions" in flags.given:
        rates = F.attention_rates(flags.classifier_attention_resolutions, size)
        if sorted(rates) != sorted(inferred["attention_resolutions"]):
            found.append(_mismatch("classifier_attention_resolutions",
                                   _resolutions(inferred["attention_resolutions"], size) or "none",
                                   _resolutions(rates, size)))
    return found


_LAYOUT_KEYS = ("in_channels", "model_channels", "out_channels", "num_res_blocks", "channel_mult",
                "use_scale_shift_norm", "resblock_updown", "num_classes")


def _preset_fits(preset: F.Flags, inferred: dict[str, Any]) -> bool:
    """Does the preset describe these weights (a renamed file must not borrow another's settings)?"""
    network = F.unet_network(preset)
    same = all(network.get(k) == inferred.get(k) for k in _LAYOUT_KEYS)
    return same and sorted(network["attention_resolutions"]) == sorted(inferred["attention_resolutions"])


def _size_from_mult(mult: list[float]) -> int | None:
    for size, default in F.DEFAULT_CHANNEL_MULT.items():
        if [float(m) for m in default] == [float(m) for m in mult]:
            return size
    return None


def _classifier_native(state: State, name: str) -> tuple[dict[str, Any] | None, int | None, str | None]:
    """(inferred classifier keywords, the image size its attention pool was built for, error)."""
    try:
        inferred = infer_classifier(state)
    except ValueError as exc:  # CheckpointError included
        return None, None, str(exc)
    levels, pool = inferred.pop("levels"), inferred.pop("pool_size", None)
    return inferred, (None if pool is None else pool * 2 ** (levels - 1)), None


def _heads_text(facts: F.Flags) -> str:
    text = (f"{facts.num_head_channels} channels per head" if facts.num_head_channels != -1
            else f"{facts.num_heads} heads")
    if facts.num_heads_upsample not in (-1, facts.num_heads) and facts.num_head_channels == -1:
        text += f" ({facts.num_heads_upsample} when upsampling)"
    return text


def _model_settings(d: Decisions, network: dict[str, Any], flags: F.Flags, preset: F.Flags | None,
                    preset_name: str, layout_source: str, size_source: str, size_warning: str) -> None:
    """The model's rows of the plan, with a warning on each unconfirmable default."""
    facts, size = d.facts, network["image_size"]
    add = d.settings.append
    rates = network["attention_resolutions"]
    attention = f"attention at {_resolutions(rates, size)}" if rates else "no attention"
    add(Setting(MODEL, "layout", f"{network['model_channels']} channels × {_mult_text(network['channel_mult'])}, "
                f"{network['num_res_blocks']} res-blocks per level, {attention}", layout_source))
    add(Setting(MODEL, "image size", f"{size}×{size}", size_source, size_warning))
    n = network.get("num_classes") or 0
    add(Setting(MODEL, "classes", f"{n} (ImageNet), class-conditional" if n == F.NUM_CLASSES
                else (f"{n}, class-conditional" if n else "none (unconditional)"), layout_source))
    learn = network["out_channels"] == 2 * network["in_channels"]
    add(Setting(MODEL, "output", "ε and a learned variance" if learn else "ε (fixed variance)", layout_source))
    src_schedule = _source("noise_schedule", flags, preset, preset_name)
    src_steps = _source("diffusion_steps", flags, preset, preset_name)
    defaulted = [flag for flag, src in (("--noise_schedule", src_schedule), ("--diffusion_steps", src_steps))
                 if src == DEFAULT]
    add(Setting(MODEL, "schedule", f"{facts.noise_schedule}, {facts.diffusion_steps} steps",
                src_schedule if src_schedule == src_steps else f"{src_schedule} / {src_steps}",
                f"a default the weights cannot confirm; if the model was trained otherwise (the 64×64 ImageNet "
                f"model uses cosine), give {' and '.join(defaulted)}" if defaulted else ""))
    if not rates:
        return
    head_flags = ("num_heads", "num_head_channels", "num_heads_upsample")
    sources = {_source(name, flags, preset, preset_name) for name in head_flags}
    src_heads = GIVEN if GIVEN in sources else next(iter(sources - {DEFAULT}), DEFAULT)
    add(Setting(MODEL, "attention heads", _heads_text(facts), src_heads,
                "a default the weights cannot confirm (the published models use --num_head_channels 64, "
                "except 128×128: --num_heads 4); give it" if src_heads == DEFAULT else ""))
    src_order = _source("use_new_attention_order", flags, preset, preset_name)
    add(Setting(MODEL, "attention order", "new (split heads, then q·k·v)" if facts.use_new_attention_order
                else "legacy (q·k·v, then split heads)", src_order,
                "a default the weights cannot confirm (the 64×64 ImageNet model uses the new order); give "
                "--use_new_attention_order" if src_order == DEFAULT else ""))


def _plan_model(d: Decisions, state: State, name: str, flags: F.Flags, size_hint: int | None,
                hint_source: str) -> None:
    """Fill `d` with the diffusion model's network, facts and rows."""
    preset = model_preset(name)
    try:
        inferred: dict[str, Any] | None = infer_unet(state)
        infer_error = ""
    except ValueError as exc:  # an unusual or ambiguous layout: the flags decide, when they give one
        if not flags.gives_any(F.MODEL_LAYOUT) or not is_unet(state):
            raise
        inferred, infer_error = None, str(exc)
    if inferred is not None:
        inferred.pop("levels")
        if preset is not None and not _preset_fits(preset, inferred):
            preset = None  # a renamed file: trust the weights, not the name
    facts = (preset or F.Flags()).replace(**{k: getattr(flags, k) for k in flags.given})
    d.facts = facts
    size_warning = ""
    if "image_size" in flags.given:
        size, size_source = flags.image_size, GIVEN
    elif preset is not None:
        size, size_source = preset.image_size, f"the preset for {name}"
    elif size_hint is not None:
        size, size_source = size_hint, hint_source
    elif inferred is not None and (size := _size_from_mult(inferred["channel_mult"])) is not None:
        size_source = "a guess from the channel multipliers"
        size_warning = (f"the weights cannot confirm it (guided-diffusion's default multipliers for {size}×{size}); "
                        "give --image_size")
    else:
        raise ValueError(f"{name}: the image size cannot be told from the weights; give the image size "
                         "(e.g. --image_size 64).")
    if inferred is None:
        network = F.unet_network(facts.replace(image_size=size))
        layout_source = f"{GIVEN} (the weights' layout could not be inferred: {infer_error})"
    else:
        d.mismatches += _check_unet(inferred, flags, size)
        network = {**inferred, "image_size": size, "dropout": facts.dropout, "num_heads": facts.num_heads,
                   "num_head_channels": facts.num_head_channels, "num_heads_upsample": facts.num_heads_upsample,
                   "use_new_attention_order": facts.use_new_attention_order}
        checked = sorted(flags.given & F.MODEL_LAYOUT)
        layout_source = WEIGHTS + (" (your layout flags agree)" if checked and not d.mismatches else "")
    d.facts = facts.replace(image_size=size)
    d.network = network
    _model_settings(d, network, flags, preset, name, layout_source, size_source, size_warning)


def classifier_head_channels(network: dict) -> int:
    """The channels per attention head of an inferred classifier (the weights cannot tell them).

    guided-diffusion's create_classifier always builds 64-channel heads, whatever the width, so a
    classifier its tools made has them wherever it has attention (the levels at its attention rates,
    the middle block, the attention pool). Only where some of those widths are not a multiple of 64 —
    a layout create_classifier cannot build — are narrower 32-channel heads the ones that fit.
    """
    widths = [int(m * network["model_channels"]) for m in network["channel_mult"]]
    rates = set(network["attention_resolutions"])
    attended = [w for level, w in enumerate(widths) if 2 ** level in rates] + [widths[-1]]
    return 64 if all(w % 64 == 0 for w in attended) else 32


def _plan_classifier(d: Decisions, state: State, name: str, flags: F.Flags, size: int, size_given: bool) -> None:
    """Fill `d` with the classifier's network and rows, checked against the model's image size
    (`size_given`: that size is the --image_size of the flags)."""
    preset = classifier_preset(name)
    inferred, native, error = _classifier_native(dict(state), name)
    if inferred is None:
        if not flags.gives_any(F.CLASSIFIER_LAYOUT):
            raise CheckpointError(error or f"{name}: not a guided-diffusion classifier.")
        network = F.classifier_network(flags.replace(image_size=size))
        source = f"{GIVEN} (the weights' layout could not be inferred: {error})"
    else:
        if preset is not None and native in (None, preset.image_size):
            native = native or preset.image_size
        if native is not None and native != size:
            if not size_given:
                raise CheckpointError(f"{name} classifies {native}×{native} images, but the model makes {size}×{size}.")
            d.mismatches.append(_mismatch("image_size", native, size, "in the classifier file"))
        d.mismatches += _check_classifier(inferred, flags, size)
        network = {**inferred, "image_size": size, "num_head_channels": classifier_head_channels(inferred)}
        source = WEIGHTS
    d.classifier_network = network
    rates = network["attention_resolutions"]
    attention = f"attention at {_resolutions(rates, size)}" if rates else "no attention"
    d.settings.append(Setting(CLASSIFIER, "layout", f"width {network['model_channels']} × "
                              f"{_mult_text(network['channel_mult'])}, depth {network['num_res_blocks']}, "
                              f"{attention}, {network['pool']} pooling", source))
    n = network["out_channels"]
    d.settings.append(Setting(CLASSIFIER, "classes", f"{n} (ImageNet)" if n == F.NUM_CLASSES else str(n), source))
    if native is not None:
        d.settings.append(Setting(CLASSIFIER, "image size", f"{native}×{native}",
                                  "its attention pool" if inferred and "pool" in inferred else "its preset"))


def _bundle_rows(d: Decisions, config: ModelConfig, flags: F.Flags, file_name: str) -> None:
    """A bundle carries its own config: show it, and check the flags that would change it."""
    size = config.data_shape[-1]
    add = d.settings.append
    add(Setting(MODEL, "layout", f"{config.architecture}", IN_FILE))
    if config.is_image:
        add(Setting(MODEL, "image size", "×".join(str(s) for s in config.data_shape[1:]), IN_FILE))
    add(Setting(MODEL, "classes", f"{config.num_classes}" + (", with a null label (CFG)" if config.null_label else "")
                if config.num_classes else "none (unconditional)", IN_FILE))
    add(Setting(MODEL, "schedule", f"{config.schedule}, {config.num_timesteps} steps", IN_FILE))
    pairs = {"noise_schedule": (config.schedule, flags.noise_schedule),
             "diffusion_steps": (config.num_timesteps, flags.diffusion_steps),
             "image_size": (size, flags.image_size),
             "learn_sigma": (config.learn_sigma, flags.learn_sigma)}
    for name, (in_file, in_flags) in pairs.items():
        if name in flags.given and in_file != in_flags:
            d.mismatches.append(_mismatch(name, in_file, in_flags, f"in {file_name}"))


def _description(d: Decisions, file_name: str) -> str:
    """One line that always states the schedule, and where the layout and the schedule came from."""
    assert d.network is not None
    size = d.network["image_size"]
    kind = "class-conditional" if d.network.get("num_classes") else "unconditional"
    source = {s.name: s.source.split(" (")[0] for s in d.settings if s.part == MODEL}
    return (f"guided-diffusion {size}×{size} {kind} model, {d.facts.noise_schedule} schedule "
            f"({d.facts.diffusion_steps} steps) ({file_name}; layout from {source['layout']}, "
            f"schedule from {source['schedule']}).")


def plan_checkpoint(model: State | ModelConfig, model_name: str, flags: F.Flags,
                    classifier: State | ClassifierConfig | None = None, classifier_name: str = "") -> Decisions:
    """Decide everything a load needs. `model` / `classifier`: state dicts (real or shape-only) of
    guided-diffusion files, or the configs of our bundles. Errors land in `Decisions.error`."""
    d = Decisions()
    try:
        size_hint, hint_source = None, ""
        if isinstance(classifier, dict) and "image_size" not in flags.given:
            _, size_hint, _ = _classifier_native(dict(classifier), classifier_name)
            if size_hint is None and (preset := classifier_preset(classifier_name)) is not None:
                size_hint = preset.image_size
            hint_source = f"the classifier ({classifier_name})"
        if isinstance(model, ModelConfig):
            _bundle_rows(d, model, flags, model_name)
            size = model.data_shape[-1]
            d.facts = flags.replace(noise_schedule=model.schedule, diffusion_steps=model.num_timesteps)
            d.description = model.description
        else:
            _plan_model(d, model, model_name, flags, size_hint, hint_source)
            assert d.network is not None
            size = d.network["image_size"]
            F.check_diffusion(d.facts)
            d.description = _description(d, model_name)
        if isinstance(classifier, ClassifierConfig):
            d.settings.append(Setting(CLASSIFIER, "classes", str(classifier.num_classes), IN_FILE))
        elif classifier is not None:
            _plan_classifier(d, classifier, classifier_name, flags, size,
                             "image_size" in flags.given and not isinstance(model, ModelConfig))
    except ValueError as exc:  # CheckpointError included
        d.error = str(exc)
    if d.error is None and d.mismatches:
        d.error = "The flags do not match the weights: " + "; ".join(d.mismatches) + "."
    return d


# --- files ------------------------------------------------------------------------------------------------

def _cached(path: Path, shapes: dict[Any, Any] | None) -> State:
    if shapes is None:
        return read_shapes(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in shapes:
        shapes[key] = read_shapes(path)
    return shapes[key]


def _read(path: Path, shapes: dict[Any, Any] | None, what: str) -> State | ModelConfig | ClassifierConfig:
    """A bundle's config (model or classifier), or a checkpoint's shapes."""
    if is_bundle(path):
        meta = read_metadata(path)
        try:
            if what == MODEL:
                return ModelConfig.from_json(meta["config"])
            if "classifier_config" not in meta:
                raise CheckpointError(f"{path.name} has no classifier in it.")
            return ClassifierConfig.from_json(meta["classifier_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its configuration is unreadable ({exc}).") from None
    return _cached(path, shapes)


def plan_files(model_path: str | os.PathLike, classifier_path: str | None = None, flags: str = "",
               shapes: dict[Any, Any] | None = None) -> LoadPlan:
    """The LoadPlan for a guided-diffusion file or one of our bundles (shapes and metadata only)."""
    model_path = Path(model_path)
    family = BUNDLE if is_bundle(model_path) else GUIDED_DIFFUSION
    kind = "Guidance Studio bundle" if family == BUNDLE else "guided-diffusion checkpoint"
    try:
        parsed = F.parse_flags(flags)
        model = _read(model_path, shapes, MODEL)
        classifier = None if not classifier_path else _read(Path(classifier_path), shapes, CLASSIFIER)
        if family == BUNDLE and classifier is None and "classifier_config" in read_metadata(model_path):
            classifier = _read(model_path, shapes, CLASSIFIER)  # the bundle's own classifier
    except ValueError as exc:
        return LoadPlan(family, kind, str(model_path), classifier_path, flags, error=str(exc))
    d = plan_checkpoint(model, model_path.name, parsed, classifier,
                        Path(classifier_path).name if classifier_path else "")
    error = d.error
    try:
        changes, applied, unused = F.sampling_settings(F.other_flags(flags), classifier is not None,
                                                     d.facts.diffusion_steps)
    except ValueError as exc:
        changes, applied, unused, error = {}, [], [], error or str(exc)
    if family == BUNDLE:
        unused += [f"--{name} {getattr(parsed, name)}: the bundle carries its own layout"
                   for name in sorted(parsed.given & BUNDLE_FIXED)]
    return LoadPlan(family, kind, str(model_path), classifier_path, flags, tuple(d.settings), changes,
                    tuple(applied), tuple(unused), error)
