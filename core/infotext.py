"""The `parameters` PNG text chunk that AUTOMATIC1111's web UI writes (its "infotext"), which ComfyUI,
InvokeAI and image sites read: written for prompt models beside our own JSON, and read from PNGs that
those tools wrote. No Qt, no torch.

The format (a de-facto one, no specification): the prompt (any number of lines); then, when there is
one, a line starting `Negative prompt: ` (its text may also run over several lines); then one last line of
`Key: value` pairs separated by ", " — `Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x512,
Model: name`. A value holding a comma, colon or line break is written as a JSON string ("…" with
backslash escapes). A reader takes the last line as the pairs only when at least three pairs parse from
it. CFG scale is diffusers' guidance_scale γ = 1 + w; Size is width x height; image i of a batch has seed
+ i (as in this app).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

CHUNK_KEY = "parameters"
NEGATIVE = "Negative prompt:"
_PAIR = re.compile(r'\s*(\w[\w \-/]*?)\s*:\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"(\d+)\s*x\s*(\d+)")
SAMPLER_NAMES = {"ddim": "DDIM", "ddpm": "DDPM"}


@dataclass(frozen=True)
class Infotext:
    """A parsed `parameters` chunk: prompt, negative prompt, and the `Key: value` pairs in order."""

    prompt: str = ""
    negative_prompt: str = ""
    pairs: dict[str, str] = field(default_factory=dict)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(ch in text for ch in ",:\n") else text


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except json.JSONDecodeError:
            return value[1:-1]
    return value


def step_count(steps: str) -> int:
    """How many denoising steps a respacing spec takes ("ddim25" → 25, "10,15,20" → 45)."""
    spec = steps.strip().lower().removeprefix("ddim")
    return sum(int(part) for part in spec.split(","))


def format_infotext(request: Any, model_name: str, width: int, height: int, index: int = 0) -> str:
    """The `parameters` text for image `index` of `request`'s batch (its seed is seed + index)."""
    lines = [request.prompt or ""]
    if request.negative_prompt:
        lines.append(f"{NEGATIVE} {request.negative_prompt}")
    g = request.guidance
    pairs: list[tuple[str, Any]] = [("Steps", step_count(request.steps)),
                                    ("Sampler", SAMPLER_NAMES[request.sampler])]
    if g.uses_cfg:
        pairs.append(("CFG scale", f"{1 + g.weight:g}"))
    if request.sampler == "ddim" and request.eta:
        pairs.append(("Eta", f"{request.eta:g}"))
    pairs += [("Seed", request.seed + index), ("Size", f"{width}x{height}"), ("Model", model_name)]
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in pairs))
    return "\n".join(lines)


def parse_infotext(text: str) -> Infotext:
    """Read a `parameters` chunk; ValueError when it holds nothing this format describes."""
    lines = text.strip().replace("\r\n", "\n").split("\n")
    pairs: dict[str, str] = {}
    found = _PAIR.findall(lines[-1]) if lines else []
    if len([k for k, _ in found if k]) >= 3:
        pairs = {key.strip(): _unquote(value) for key, value in found if key}
        lines = lines[:-1]
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if not negative and line.startswith(NEGATIVE):
            negative.append(line[len(NEGATIVE):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    info = Infotext("\n".join(prompt).strip(), "\n".join(negative).strip(), pairs)
    if not (info.prompt or info.negative_prompt or info.pairs):
        raise ValueError("The image's generation parameters are empty.")
    return info


def settings_from_infotext(info: Infotext) -> tuple[dict[str, Any], list[str], list[str]]:
    """(settings changes, what was applied, what could not be) for the studio's panels.

    Settings use the session's names: prompt, negative_prompt, steps, sampler, eta, guidance, weight, seed,
    width, height. The model named in the text is reported, never loaded.
    """
    changes: dict[str, Any] = {}
    applied: list[str] = []
    skipped: list[str] = []
    if info.prompt:
        changes["prompt"] = info.prompt
        applied.append("prompt")
    if info.negative_prompt:
        changes["negative_prompt"] = info.negative_prompt
        applied.append("negative prompt")
    for key, value in info.pairs.items():
        entry = f"{key}: {value}"
        try:
            if key == "Steps":
                n = int(value)
                if n < 1:
                    raise ValueError
                changes["steps"] = str(n)
            elif key == "CFG scale":
                gamma = float(value)
                if not gamma >= 0:
                    raise ValueError
                changes.update(guidance="cfg", weight=gamma - 1)
            elif key == "Seed":
                seed = int(value)
                if seed < 0:
                    raise ValueError
                changes["seed"] = seed
            elif key == "Size":
                match = _SIZE.fullmatch(value)
                if match is None or int(match[1]) % 8 or int(match[2]) % 8:
                    skipped.append(f"{entry} (the studio's sizes are multiples of 8)")
                    continue
                changes.update(width=int(match[1]), height=int(match[2]))
            elif key == "Sampler":
                sampler = {v: k for k, v in SAMPLER_NAMES.items()}.get(value.strip())
                if sampler is None:
                    skipped.append(f"{entry} (the studio samples with DDIM or DDPM)")
                    continue
                changes["sampler"] = sampler
            elif key == "Eta":
                eta = float(value)
                if not 0 <= eta <= 1:
                    raise ValueError
                changes["eta"] = eta
            elif key == "Model":
                skipped.append(f"{entry} (open that model yourself; the settings go to the model now open)")
                continue
            else:
                skipped.append(entry)
                continue
        except ValueError:
            skipped.append(f"{entry} (not a value the studio can use)")
            continue
        applied.append(entry)
    return changes, applied, skipped
