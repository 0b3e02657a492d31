"""What opening a diffusers pipeline folder or a single-file Stable Diffusion checkpoint will use, read from
JSON configs and weight headers only (no diffusers import), for the Open-model dialog: the pipeline and its
family, the image size, what it is conditioned on, the schedule as its scheduler config defines it, the
family's default CFG strength and the memory it needs. For a folder everything comes from its files; for a
single file the configs are the shipped ones for the family its weights show, and the one guess (a 2.x file
without a NAME.yaml is taken as v-prediction) carries a warning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import model_plan
from ..model_plan import DIFFUSERS, MODEL, LoadPlan, Setting
from . import files
from .deps import INSTALL_HINT
from .loader import DEFAULT_GUIDANCE_SCALE, FAMILY_NAMES, inspect_pipeline, schedule_text
from .single_file import find_tokenizer, inspect_single_file

DENOISER = {"pixel": "unet", "dit": "transformer", "sd": "unet"}


def _side(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


def _rows(folder: Path, info: Any, precision: str) -> list[Setting]:
    family = info.family
    index = files.read_model_index(folder)
    denoiser = DENOISER[family]
    config = files.read_json(folder / denoiser / "config.json")
    source = f"{denoiser}/config.json"
    rows = [Setting(MODEL, "pipeline", f"{info.pipeline} ({FAMILY_NAMES[family]})", "model_index.json"),
            Setting(MODEL, "components", ", ".join(f"{k}: {v}" for k, v in info.components.items()),
                    "model_index.json")]
    h, w = _side(config.get("sample_size", 64))
    if "vae" in info.components:
        factor = 2 ** (len(files.read_json(folder / "vae" / "config.json").get("block_out_channels", [0])) - 1)
        size = f"{w * factor}×{h * factor} from {w}×{h} latents (×{factor})"
        if family == "sd":
            size += "; any multiple of 8 in the Prompt panel"
        rows.append(Setting(MODEL, "image size", size, f"{source} and vae/config.json"))
    else:
        rows.append(Setting(MODEL, "image size", f"{w}×{h}", source))
    if family == "sd":
        encoder = info.components["text_encoder"]
        rows.append(Setting(MODEL, "conditioning", f"a prompt and a negative prompt ({encoder})", "model_index.json"))
    elif family == "dit":
        n = int(config.get("num_embeds_ada_norm") or 1000)
        names = "its id2label names" if isinstance(index.get("id2label"), dict) else "ImageNet's names"
        rows.append(Setting(MODEL, "classes", f"{n}, {names}, null class {n} (CFG)", source))
    else:
        n = int(config.get("num_class_embeds") or 0)
        rows.append(Setting(MODEL, "classes", f"{n}, class-conditional" if n else "none (unconditional)", source))
    scheduler = files.read_json(folder / "scheduler" / "scheduler_config.json")
    rows.append(Setting(MODEL, "schedule", schedule_text(scheduler), "scheduler/scheduler_config.json"))
    gamma = DEFAULT_GUIDANCE_SCALE.get(family)
    if gamma is not None:
        rows.append(Setting(MODEL, "default CFG", f"γ = {gamma:g} (w = {gamma - 1:g})",
                            f"the {FAMILY_NAMES[family]} pipeline's default"))
    rows.append(Setting(MODEL, "memory", info.memory_text(precision), "the weight files"))
    return rows


def plan_pipeline(path: str | Path, classifier: str | None = None, flags: str = "",
                  precision: str = "fp32") -> LoadPlan:
    """The LoadPlan of a pipeline folder (never raises for a bad one: the plan's error says what is wrong)."""
    path = Path(path)
    kind = "diffusers pipeline folder" if path.is_dir() else "single-file Stable Diffusion checkpoint"
    unused = (f"{flags.strip()}: guided-diffusion flags do not apply to diffusers models",) if flags.strip() else ()
    plan = dict(family=DIFFUSERS, kind=kind, model_path=str(path), classifier_path=classifier, flags=flags,
                unused=unused, accepts_classifier=False, accepts_flags=False)
    error = None
    try:
        if path.is_dir():
            info = inspect_pipeline(path)
            rows = _rows(path, info, precision)
        else:
            info, config, decided = inspect_single_file(path)
            assumed = "assumed" in decided
            rows = [Setting(MODEL, "model", decided, "the weights" + (", no NAME.yaml beside it" if assumed else ""),
                            "an SD 2.x ε model (512-base) samples noise as v-prediction" if assumed else ""),
                    Setting(MODEL, "configs", str(config), "shipped with the app for this family")]
            try:
                rows.append(Setting(MODEL, "tokenizer", str(find_tokenizer(path)),
                                    "beside the file, or the Hugging Face cache"))
            except ValueError as exc:
                error = str(exc)
            rows += _rows(config, info, precision)
    except ValueError as exc:  # CheckpointError included
        return LoadPlan(**plan, error=str(exc))
    missing = model_plan.diffusers_missing()
    if missing:
        error = (f"Opening a {kind} needs the optional packages diffusers and transformers "
                 f"({' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing). Add them with: "
                 f"{INSTALL_HINT}")
    elif classifier:
        error = "A noise-aware classifier goes with guided-diffusion checkpoints; diffusers models take none."
    return LoadPlan(**plan, settings=tuple(rows), error=error)
