"""What opening a model will use, decided before any weights are loaded, with where each value comes from.

`plan_open(path, classifier_path, flags)` reads only what it must (a bundle's metadata, a checkpoint's
tensor shapes, a pipeline's JSON configs) and returns a `LoadPlan`: the family, every setting the load
will use with its source ("the weights", "your flags", a preset, a default), a warning on each default
the weights cannot confirm, the sampling settings that pasted flags ask for, the flags that change
nothing (and why), and the error that stops the load, if any. It never raises for bad input: a file
that cannot be opened is a plan with an `error`. The desktop's Open-model dialog shows this plan, and
`open_planned` loads exactly what it describes.

Sampling settings use the request's vocabulary: sampler, steps, eta, guidance (the kind), scale, weight,
clip, batch.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE = "bundle"
GUIDED_DIFFUSION = "guided-diffusion"
DIFFUSERS = "diffusers"

MODEL = "model"
CLASSIFIER = "classifier"


@dataclass(frozen=True)
class Setting:
    """One thing a load will use, as a person reads it.

    part: "model" or "classifier". source: where the value comes from ("the weights", "your flags",
    "the preset for 64x64_diffusion.pt", "guided-diffusion's default", …). warning: set when the value is
    a default or a guess that the weights cannot confirm and that changes the samples if wrong.
    """

    part: str
    name: str
    value: str
    source: str
    warning: str = ""


@dataclass(frozen=True)
class LoadPlan:
    """What `open_planned` will do for one model (and classifier) with these flags.

    family: BUNDLE, GUIDED_DIFFUSION or DIFFUSERS ("" when the path cannot be opened at all).
    kind: the family in words ("guided-diffusion checkpoint", "diffusers pipeline folder", …).
    sampling: settings for the panels asked for by sampling flags (module docstring's vocabulary);
    applied: one line per sampling flag saying what it set; unused: one line per flag that sets
    nothing, with the reason. accepts_classifier / accepts_flags: whether this family takes them.
    """

    family: str
    kind: str
    model_path: str
    classifier_path: str | None = None
    flags: str = ""
    settings: tuple[Setting, ...] = ()
    sampling: Mapping[str, Any] = field(default_factory=dict)
    applied: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()
    error: str | None = None
    accepts_classifier: bool = True
    accepts_flags: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{s.name}: {s.warning}" for s in self.settings if s.warning)

    def lines(self) -> list[str]:
        """The plan as plain text, one line each (the CLI and logs; the dialog formats it richer)."""
        out = [f"{Path(self.model_path).name}: {self.kind or 'cannot be opened'}"]
        for s in self.settings:
            warning = f"  WARNING: {s.warning}" if s.warning else ""
            out.append(f"  {s.part} {s.name}: {s.value} ({s.source}){warning}")
        out += [f"  applied to the panels: {line}" for line in self.applied]
        out += [f"  not used: {line}" for line in self.unused]
        if self.error:
            out.append(f"  ERROR: {self.error}")
        return out


def family_of(path: str | Path) -> str:
    """BUNDLE, GUIDED_DIFFUSION or DIFFUSERS by what is at `path` (without loading weights); ValueError
    when it is none of them or absent."""
    path = Path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return DIFFUSERS
        raise ValueError(f"{path.name} is a folder without model_index.json; a diffusers pipeline folder has one.")
    if not path.is_file():
        raise ValueError(f"No such file or folder: {path}.")
    from .diffusers.single_file import is_single_file_checkpoint
    from .guided_diffusion.files import is_bundle

    if is_bundle(path):
        return BUNDLE
    return DIFFUSERS if is_single_file_checkpoint(path) else GUIDED_DIFFUSION


def plan_open(path: str | Path, classifier_path: str | Path | None = None, flags: str = "",
              shapes: dict[str, Any] | None = None, precision: str = "fp32") -> LoadPlan:
    """The plan for opening `path` (with an optional classifier file and flags); never raises for bad
    input. `shapes` is an optional cache of tensor shapes by file (path, size, mtime), so that a dialog
    re-planning on every edit of the flags reads each file once; `precision` is the one the memory a
    pipeline needs is stated for."""
    path = Path(path)
    classifier = str(classifier_path) if classifier_path else None
    try:
        family = family_of(path)
    except ValueError as exc:
        return LoadPlan("", "", str(path), classifier, flags, error=str(exc))
    if family == DIFFUSERS:
        from .diffusers.plan import plan_pipeline

        return plan_pipeline(path, classifier, flags, precision)
    from .guided_diffusion.plan import plan_files

    return plan_files(path, classifier, flags, shapes=shapes)


def diffusers_missing() -> list[str]:
    """The optional packages diffusers models need that are not installed (found without importing them)."""
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # blocked, or a broken install
            return True

    return [name for name in ("diffusers", "transformers") if absent(name)]


def open_planned(plan: LoadPlan, device: str = "auto", precision: str = "fp32") -> Any:
    """Load the model `plan` describes (a `ModelBundle`); ValueError with the plan's error if it has one."""
    if plan.error:
        raise ValueError(plan.error)
    if plan.family == BUNDLE and not plan.classifier_path:
        from .registry import load_model

        return load_model(plan.model_path, device=device, precision=precision)
    if plan.family in (BUNDLE, GUIDED_DIFFUSION):
        from .guided_diffusion import load_checkpoint

        return load_checkpoint(plan.model_path, classifier_path=plan.classifier_path, flags=plan.flags,
                               device=device, precision=precision)
    from .registry import load_model

    return load_model(plan.model_path, device=device, precision=precision)
