"""Parameter sweeps: one request per (seed, value), run one after another, composed into a legend grid.

Qt-free. Runs that share a seed share all their noise (the engine guarantees it), so a row of the
grid isolates the effect of the swept parameter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

from core.runs import RunResult

from .. import limits
from ..library.export import enlarge, font
from ..library.pngio import result_picture

if TYPE_CHECKING:  # core loads torch; the sweep window is built before that
    from core import ModelBundle, SamplingRequest

MAX_CELLS = 400  # runs in one sweep: a grid the window can show and a person can look at

# parameter key → (label in the grid, what it means)
PARAMETERS = {
    "weight": ("w", "classifier-free guidance weight w"),
    "scale": ("s", "classifier guidance scale s"),
    "steps": ("steps", "number of sampling steps (respacing)"),
    "eta": ("eta", "DDIM noise η"),
    "sampler": ("sampler", "sampler (ddpm or ddim)"),
}


def parse_values(parameter: str, text: str) -> tuple[Any, ...]:
    """The values typed for `parameter`: comma- or space-separated ("0, 1, 2.5").

    For steps, separate values with ';' when a value itself is a sections spec ("10,15,20; 50").
    """
    if parameter not in PARAMETERS:
        raise ValueError(f"Cannot sweep {parameter!r}; choose one of {', '.join(PARAMETERS)}.")
    sep = ";" if parameter == "steps" and ";" in text else r"[,\s]"
    parts = [p.strip() for p in re.split(sep, text) if p.strip()]
    if not parts:
        raise ValueError(f"Type at least one value for {PARAMETERS[parameter][1]}.")
    if len(parts) > MAX_CELLS:
        raise ValueError(f"{len(parts)} values are more than a sweep can hold ({MAX_CELLS} runs at most).")
    if parameter in ("weight", "scale", "eta"):
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise ValueError(f"Values of {PARAMETERS[parameter][1]} must be numbers, got {text!r}.") from None
    elif parameter == "sampler":
        values = tuple(p.lower() for p in parts)
    else:
        values = tuple(p.lower().replace(" ", "") for p in parts)
    if len(set(values)) != len(values):
        raise ValueError("Each sweep value should appear once.")
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds like "0, 1, 5" or ranges like "0-3" (inclusive)."""
    seeds: list[int] = []
    for part in (p.strip() for p in re.split(r"[,\s]+", text.strip())):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"Seeds must be non-negative whole numbers or ranges like 0-3, got {part!r}.")
        for digits in filter(None, (match[1], match[2])):  # the seed box's limit: runs a reopen can restore
            if len(digits) > len(str(int(limits.SEED.high))) or int(digits) > limits.SEED.high:
                raise ValueError(limits.SEED.problem(int(digits)) if len(digits) <= 100 else
                                 f"{limits.SEED.name} must be from {limits.SEED.describe()}, not a "
                                 f"{len(digits)}-digit number.")
        lo, hi = int(match[1]), int(match[2] or match[1])
        if hi < lo:
            raise ValueError(f"The seed range {part!r} runs backwards.")
        if len(seeds) + hi - lo + 1 > MAX_CELLS:  # counted before the list is made: "0-200000" is one line
            raise ValueError(f"{len(seeds) + hi - lo + 1} seeds are more than a sweep can hold "
                             f"({MAX_CELLS} runs at most).")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise ValueError("Give at least one seed.")
    if len(set(seeds)) != len(seeds):
        raise ValueError("Each seed should appear once.")
    return tuple(seeds)


def apply_value(base: SamplingRequest, parameter: str, value: Any) -> SamplingRequest:
    """`base` with `parameter` set to `value`; ValueError when the parameter has no effect on `base`."""
    g = base.guidance
    if parameter == "weight":
        if not g.uses_cfg:
            raise ValueError("Sweeping w needs classifier-free guidance: set the guidance type to "
                             "classifier-free or both.")
        return base.replace(guidance=g.__class__(g.kind, g.scale, value, g.window))
    if parameter == "scale":
        if not g.uses_classifier:
            raise ValueError("Sweeping s needs classifier guidance: set the guidance type to classifier or both.")
        return base.replace(guidance=g.__class__(g.kind, value, g.weight, g.window))
    if parameter == "eta":
        if base.sampler != "ddim":
            raise ValueError("η only changes DDIM sampling: choose the DDIM sampler to sweep it.")
        return base.replace(eta=value)
    if parameter in ("steps", "sampler"):
        return base.replace(**{parameter: value})
    raise ValueError(f"Cannot sweep {parameter!r}; choose one of {', '.join(PARAMETERS)}.")


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs: rows = seeds, columns = values of one parameter, everything else from `base`."""

    base: SamplingRequest
    parameter: str
    values: tuple[Any, ...]
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("A sweep needs at least one value.")
        if not self.seeds:
            raise ValueError("A sweep needs at least one seed.")
        rows, cols = self.shape
        if rows * cols > MAX_CELLS:
            raise ValueError(f"{rows} seeds × {cols} values make {rows * cols} runs; a sweep holds at most "
                             f"{MAX_CELLS}: use fewer seeds or values.")
        self.requests()  # validate every cell now, before anything runs

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.seeds), len(self.values)

    def request(self, row: int, col: int) -> SamplingRequest:
        return apply_value(self.base.replace(seed=self.seeds[row]), self.parameter, self.values[col])

    def requests(self) -> list[list[SamplingRequest]]:
        return [[self.request(r, c) for c in range(len(self.values))] for r in range(len(self.seeds))]

    def column_label(self, col: int) -> str:
        value = self.values[col]
        text = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{PARAMETERS[self.parameter][0]} = {text}"

    def row_label(self, row: int) -> str:
        return f"seed {self.seeds[row]}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the sweep (the library keeps it with the group); `from_dict` inverts it."""
        return {"base": self.base.to_dict(), "parameter": self.parameter, "values": list(self.values),
                "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SweepSpec":
        """ValueError, with a sentence, when it does not describe a sweep (a damaged library record too)."""
        from core import SamplingRequest

        try:
            return cls(SamplingRequest.from_dict(data["base"]), str(data["parameter"]), tuple(data["values"]),
                       tuple(int(seed) for seed in data["seeds"]))
        except KeyError as exc:
            raise ValueError(f"its record has no {exc}.") from None
        except (TypeError, OverflowError) as exc:  # a value of the wrong kind: a list that is a number, …
            raise ValueError(f"its record is damaged ({exc}).") from None

    @classmethod
    def of_group(cls, settings: dict[str, Any], cells: list[tuple[int, int, int]]) -> "SweepSpec":
        """The sweep a library group holds (`GroupEntry.settings`, `.cells`), its cells checked against
        its grid; ValueError with a sentence when the record cannot be reopened."""
        spec = cls.from_dict(settings)
        rows, cols = spec.shape
        if any(r >= rows or c >= cols for r, c, _ in cells):  # the grid's indices are Qt ints
            raise ValueError(f"its cells lie outside its {rows} × {cols} grid.")
        return spec

    def title(self, model: str) -> str:
        b, g = self.base, self.base.guidance
        parts = [model, f"{b.sampler} {b.steps} steps", f"guidance {g.kind}"]
        if g.uses_cfg and self.parameter != "weight":
            parts.append(f"w={g.weight:g}")
        if g.uses_classifier and self.parameter != "scale":
            parts.append(f"s={g.scale:g}")
        return " · ".join(parts) + f" · sweeping {PARAMETERS[self.parameter][1]}"


@dataclass(frozen=True)
class SweepCell:
    """One finished run of a sweep. initial: its step-0 noise x_T as (B, *data_shape) float32 (None for
    a cell reopened from the library, whose run file keeps previews only). picture: its final samples."""

    row: int
    col: int
    result: RunResult
    initial: np.ndarray | None
    picture: np.ndarray

    @classmethod
    def reopened(cls, row: int, col: int, result: RunResult) -> "SweepCell":
        return cls(row, col, result, None, result_picture(result))


CELL_PREVIEW_SIDE = 256  # a cell's previews: about the size a grid cell shows

def run_sweep(spec: SweepSpec, bundle: ModelBundle, cancel=None) -> Iterator[SweepCell]:
    """Run the cells row by row; yield each as it finishes. Stops between steps once `cancel` is set.

    Each cell's record keeps the classifier's p(y | x_t) where it comes within 3 % of the cell's time.
    """
    from core import sample
    from core.diagnostics import DiagnosticsBudget
    from core.recording import Recorder

    rows, cols = spec.shape
    for r in range(rows):
        for c in range(cols):
            if cancel is not None and cancel.is_set():
                return
            request = spec.request(r, c)
            recorder = Recorder.for_bundle(request, bundle, max_side=CELL_PREVIEW_SIDE)
            budget = DiagnosticsBudget()
            initial = last = None
            for step in sample(request, bundle, cancel, diagnostics=budget):
                if initial is None:
                    initial = step.x.detach().float().cpu().numpy()
                budget.observe(step)
                recorder.add(step)
                last = step
            if last is None or not last.is_last:
                return  # cancelled inside this cell: nothing half-done is reported
            result = recorder.result(completed=True)
            yield SweepCell(r, c, result, initial, result_picture(result))


def compose_grid(pictures: dict[tuple[int, int], np.ndarray], row_labels: list[str],
                 col_labels: list[str], title: str = "", min_cell: int = 128) -> np.ndarray:
    """A labelled (H, W, 3) uint8 grid: a title line, column headers, row headers, one picture per cell.

    Missing cells are drawn light grey. Pictures smaller than `min_cell` are enlarged.
    """
    shown = {k: enlarge(v, min_cell) for k, v in pictures.items()}
    cell_h = max([p.shape[0] for p in shown.values()] + [min_cell])
    cell_w = max([p.shape[1] for p in shown.values()] + [min_cell])
    pad, title_h, head_h = 6, (26 if title else 0), 22
    label_font, title_font = font(14), font(15)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    head_w = max([probe.textlength(t, font=label_font) for t in row_labels] + [40]) + 2 * pad
    width = int(head_w + len(col_labels) * (cell_w + pad) + pad)
    width = max(width, int(probe.textlength(title, font=title_font)) + 2 * pad if title else 0)
    height = title_h + head_h + len(row_labels) * (cell_h + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 5), title, fill="black", font=title_font)
    top = title_h + head_h
    for c, text in enumerate(col_labels):
        x = head_w + c * (cell_w + pad)
        draw.text((x + (cell_w - probe.textlength(text, font=label_font)) / 2, title_h + 3), text,
                  fill="black", font=label_font)
    for r, text in enumerate(row_labels):
        y = top + r * (cell_h + pad)
        draw.text((pad, y + cell_h / 2 - 8), text, fill="black", font=label_font)
        for c in range(len(col_labels)):
            x = int(head_w + c * (cell_w + pad))
            picture = shown.get((r, c))
            if picture is None:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=(225, 225, 225))
            else:
                canvas.paste(Image.fromarray(picture), (x, y))
            draw.rectangle((x - 1, y - 1, x + cell_w, y + cell_h), outline=(170, 170, 170))
    return np.asarray(canvas)


ANIMATION_FRAMES = 120  # at most this many steps in an exported animation (evenly spaced, the last kept)


def animation_frames(spec: SweepSpec, model: str, cells: dict[tuple[int, int], SweepCell], view: str = "xt",
                     max_frames: int = ANIMATION_FRAMES) -> list[Image.Image]:
    """The whole grid at every (or every n-th) step, all cells locked to one step: one labelled picture
    per frame, captioned with the step and the noise level."""
    from .steps import VIEWS, StepLock

    if not cells:
        raise ValueError("Run a sweep first: there is nothing to animate yet.")
    order = sorted(cells)
    lock = StepLock([cells[key].result for key in order])
    n = len(lock)
    positions = list(range(n)) if n <= max_frames else \
        sorted({round(i * (n - 1) / (max_frames - 1)) for i in range(max_frames)})
    rows, cols = spec.shape
    frames = []
    for k in positions:
        pictures = {key: lock.picture(i, k, view) for i, key in enumerate(order)}
        title = f"{spec.title(model)} — {VIEWS[view]}, step {k} / {max(n - 1, 0)}"
        noise = lock.noise_level(k)
        if np.isfinite(noise):
            title += f", noise {noise:.3f}"
        grid = compose_grid(pictures, [spec.row_label(r) for r in range(rows)],
                            [spec.column_label(c) for c in range(cols)], title=title)
        frames.append(Image.fromarray(grid))
    return frames
