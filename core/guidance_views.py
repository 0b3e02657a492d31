"""The numbers behind the guidance views: maps of the guidance terms, the unguided twin's distance, arrow
fields over the plane, class probabilities. Pure numpy/torch, no Qt (the app's views only paint these).

Maps are made from the very tensors the update used (`Step.cfg_term`, `Step.classifier_term`), never
recomputed: for pixel models the term's mean over colour channels, signed (one channel: the term
itself); for latent models its norm over latent channels, ≥ 0, shown upsampled to the image.

What a run keeps of them is sized for its run file (`core.runs`; issue budgets: a 16-digit MNIST run of 50
steps ≤ 2 MB, a 1000-step run of 1000 points ≤ 8 MB, previews included):
  maps          int8 codes of ±MAP_RANGE × the step's colour scale (`map_scale`), read back by `map_at`:
                the view colours values only up to the run's scale, so 127 levels a side lose nothing it
                draws, at a quarter of float32's bytes and a tenth of its compressed size;
  class_shares  the batch's mean p(k | x_t), float32, at every step that has p(k | x_t);
  class_probs   p(k | x_t) of each sample as uint8 (p × 255, read back by `probs_of`), at every step while
                a run's rows fit PROBS_BUDGET, else every n-th step and the last one.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported on use: the window draws these views before the engine has loaded
    from torch import Tensor

    from .recording import Later

MAP_BUDGET = 32 * 2**20  # bytes of float32 maps (both terms, every step) one run may make: sets their block size
SCALE_PERCENTILE = 99.5  # a map's colour scale ignores the 0.5 % most extreme values (isolated pixels)
MAP_RANGE, MAP_LEVELS = 2.0, 127  # kept maps: int8 codes, one level = MAP_RANGE × scale / MAP_LEVELS
PROBS_BUDGET = 2**20  # bytes of per-sample p(k | x_t) (uint8) one run keeps

# Track names of the per-step data the guidance views add to a run record. Pixel models record signed
# maps (cfg_map, classifier_map), latent models channel norms (cfg_norm, classifier_norm).
CFG_MAP, CLASSIFIER_MAP, MAP_SCALE = "cfg_map", "classifier_map", "map_scale"
CFG_NORM, CLASSIFIER_NORM = "cfg_norm", "classifier_norm"
TWIN_XT, TWIN_X0, TWIN_DISTANCE, TWIN_X0_DISTANCE = "twin_xt", "twin_x0", "twin_distance", "twin_x0_distance"
CLASS_PROBS, CLASS_SHARES = "class_probs", "class_shares"

# Diverging blue–white–red (ColorBrewer RdBu anchors): negative values blue, zero white, positive red.
_DIVERGING = np.array([(33, 102, 172), (103, 169, 207), (247, 247, 247), (239, 138, 98), (178, 24, 43)], float)
# Sequential white → red for magnitudes (latent channel norms).
_SEQUENTIAL = np.array([(255, 255, 255), (252, 187, 161), (251, 106, 74), (203, 24, 29), (103, 0, 13)], float)


def _lut(anchors: np.ndarray, size: int = 257) -> np.ndarray:  # odd: 0 has an entry of its own
    at = np.linspace(0.0, 1.0, len(anchors))
    u = np.linspace(0.0, 1.0, size)
    return np.stack([np.interp(u, at, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


DIVERGING_LUT = _lut(_DIVERGING)
SEQUENTIAL_LUT = _lut(_SEQUENTIAL)


# --- maps ----------------------------------------------------------------------------------------

def term_map(term: Tensor, latent: bool = False) -> Tensor:
    """A guidance term (B, C, H, W) → one value per pixel (B, H, W), float32: the mean over channels
    (signed; exactly the term for one channel) for pixel models, the channel norm for latent models."""
    if term.dim() != 4:
        raise ValueError(f"A guidance map needs an image-shaped term (B, C, H, W), got {tuple(term.shape)}.")
    term = term.detach().float()
    return term.norm(dim=1) if latent else term.mean(dim=1)


def block_mean(maps: Tensor, stride: int) -> Tensor:
    """(B, H, W) → (B, ⌈H/stride⌉, ⌈W/stride⌉): the mean of each stride × stride block (edges padded
    with their own values). Stride 1 returns `maps` itself."""
    if stride <= 1:
        return maps
    import torch.nn.functional as F

    h, w = maps.shape[-2:]
    padded = F.pad(maps[:, None], (0, -w % stride, 0, -h % stride), mode="replicate")
    return F.avg_pool2d(padded, stride)[:, 0]


def map_stride(batch: int, height: int, width: int, num_steps: int, maps: int = 2, budget: int = MAP_BUDGET) -> int:
    """The smallest block size that keeps `maps` float32 maps of the batch, for every step, within `budget`."""
    need = maps * (num_steps + 1) * batch * height * width * 4
    return max(1, math.ceil(math.sqrt(need / budget)))


def robust_scale(maps: Iterable[np.ndarray | None], percentile: float = SCALE_PERCENTILE) -> float:
    """The `percentile` of |value| over all given maps (0 when there are none)."""
    values = [np.abs(m).ravel() for m in maps if m is not None and np.size(m)]
    if not values:
        return 0.0
    return float(np.percentile(np.concatenate(values), percentile))


def map_unit(scale: float | None) -> float:
    """The value of one int8 code of a kept map whose step has colour scale `scale` (0 for no scale)."""
    return MAP_RANGE * scale / MAP_LEVELS if scale is not None and scale > 0 and math.isfinite(scale) else 0.0


def encode_maps(maps: np.ndarray, scale: float) -> np.ndarray:
    """Maps → int8 codes in units of `map_unit(scale)`; values beyond ±MAP_RANGE × scale are kept at the ends."""
    unit = map_unit(scale)
    if unit == 0.0:
        return np.zeros(maps.shape, np.int8)
    return np.clip(np.rint(maps / unit), -MAP_LEVELS, MAP_LEVELS).astype(np.int8)


def map_at(tracks: Any, name: str, index: int, sample: int) -> np.ndarray | None:
    """Sample `sample`'s map of track `name` at step `index`, in the term's own units (float32), or None where
    that step has none. Reads int8 codes with the step's scale, and the float32 maps of older run files."""
    values = tracks.get(name)
    if values is None or index >= len(values) or values[index] is None:
        return None
    codes = values[index][sample]
    if codes.dtype != np.int8:
        return codes
    scales = tracks.get(MAP_SCALE, ())
    return codes.astype(np.float32) * np.float32(map_unit(scales[index] if index < len(scales) else None))


def colorize(values: np.ndarray, scale: float, signed: bool = True) -> np.ndarray:
    """A map (h, w) → (h, w, 3) uint8. signed: diverging, −scale blue, 0 white, +scale red; else
    sequential, 0 white to scale dark red. Values beyond the scale take the end colours."""
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    if signed:
        u = (np.asarray(values, np.float32) / scale + 1.0) / 2.0
        lut = DIVERGING_LUT
    else:
        u = np.asarray(values, np.float32) / scale
        lut = SEQUENTIAL_LUT
    index = np.clip(np.nan_to_num(u, nan=0.5 if signed else 0.0) * (len(lut) - 1), 0, len(lut) - 1)
    return lut[np.round(index).astype(np.intp)]


class _KeptMaps:
    """The map tracks of one run: at each step both terms' maps, block-averaged at the run's stride on the
    device and copied to the host as one array, whose host half yields the step's scale and both maps' codes."""

    def __init__(self, latent: bool):
        self.latent = latent
        self.stride = 0  # fixed at the first step with a term
        self._step: Any = None  # the step whose maps `_maps` holds
        self._maps: Tensor | None = None  # (terms, B, h, w) float32 on the device
        self._terms: tuple[str, ...] = ()  # the step's terms, in the order of `_maps`
        self._kept: tuple[int, float, np.ndarray] | None = None  # (step index, scale, codes) on the host

    def track(self, part: str) -> Callable[[Any, Any], Later | None]:
        """fn(step, recorder) for the track of `part`: "cfg_term", "classifier_term" or "scale"."""
        from .recording import Later, no_previews

        def record(step: Any, recorder: Any) -> Later | None:
            maps = self._device(step, recorder)
            if maps is None or part not in (*self._terms, "scale"):
                return None
            which = -1 if part == "scale" else self._terms.index(part)
            return Later(maps, functools.partial(self._host, step.index, which))
        return no_previews(record)

    def _device(self, step: Any, recorder: Any) -> Tensor | None:
        if step is not self._step:
            terms = {name: getattr(step, name) for name in ("cfg_term", "classifier_term")}
            terms = {name: term for name, term in terms.items() if term is not None}
            self._step, self._terms, self._maps = step, tuple(terms), None
            if terms:
                import torch

                maps = torch.stack([term_map(term, self.latent) for term in terms.values()])
                k, b, h, w = maps.shape
                if not self.stride:
                    base = 1 if self.latent else recorder.stride  # pixel maps line up with the x_t previews
                    self.stride = max(base, map_stride(b, h, w, step.num_steps))
                self._maps = block_mean(maps.flatten(0, 1), self.stride).unflatten(0, (k, b))
        return self._maps

    def _host(self, index: int, which: int, maps: np.ndarray) -> Any:
        if self._kept is None or self._kept[0] != index:  # each of the step's tracks gets this host copy
            scale = robust_scale([maps])
            self._kept = (index, scale, encode_maps(maps, scale))
        _, scale, codes = self._kept
        return scale if which < 0 else codes[which]


# --- the unguided twin ---------------------------------------------------------------------------

def rms_distance(a: Tensor, b: Tensor) -> Tensor:
    """Root-mean-square difference per sample, (B,) float32: ‖a − b‖/√D for samples of D numbers."""
    diff = (a.detach().float() - b.detach().float()).flatten(1)
    return diff.square().mean(dim=1).sqrt()


# --- the step's extra tracks ---------------------------------------------------------------------

def guidance_tracks(bundle: Any, *, maps: bool = True, twin: bool = False,
                    class_probs: bool = True) -> dict[str, Callable[[Any, Any], Any]]:
    """Per-step extras for a `core.recording.Recorder` (name → fn(step, recorder)) that record what the
    guidance views show: the two term maps and their scale, the twin's x_t and x̂0 previews and its
    distances, p(k | x_t) of every class and their batch means. Map tracks exist only for image models
    (latent ones: the channel norms at latent resolution, which the view stretches over the image)."""
    from .recording import Later, no_previews  # the maps, distances and shares reach the host without waiting

    tracks: dict[str, Callable[[Any, Any], Any]] = {}
    if maps and len(bundle.config.data_shape) == 3:
        latent = bool(getattr(bundle, "is_latent", False))
        kept = _KeptMaps(latent)
        tracks[CFG_NORM if latent else CFG_MAP] = kept.track("cfg_term")
        tracks[CLASSIFIER_NORM if latent else CLASSIFIER_MAP] = kept.track("classifier_term")
        tracks[MAP_SCALE] = kept.track("scale")
    if twin:  # the twin's two previews are the only images among these tracks
        tracks[TWIN_XT] = lambda step, recorder: None if step.twin_x is None else recorder.preview(step.twin_x)
        tracks[TWIN_X0] = lambda step, recorder: None if step.twin_x0 is None else recorder.preview(step.twin_x0)
        tracks[TWIN_DISTANCE] = no_previews(lambda step, recorder: _distance(step.x, step.twin_x))
        tracks[TWIN_X0_DISTANCE] = no_previews(lambda step, recorder: _distance(step.x0, step.twin_x0))
    if class_probs:
        tracks[CLASS_SHARES] = no_previews(lambda step, recorder: (
            None if step.log_probs is None else Later(step.log_probs.detach().float().exp().mean(0))))
        tracks[CLASS_PROBS] = no_previews(_SampleProbs())
    return tracks


class _SampleProbs:
    """The class_probs track: p(k | x_t) of each sample as uint8, at steps at least `every` apart (and the
    last), `every` chosen at the first such step so that the run's rows fit PROBS_BUDGET."""

    def __init__(self) -> None:
        self.every = 0
        self.last = -math.inf  # the index of the last step kept

    def __call__(self, step: Any, recorder: Any) -> Later | None:
        if step.log_probs is None:
            return None
        if not self.every:
            b, k = step.log_probs.shape
            self.every = max(1, math.ceil((step.num_steps + 1) * b * k / PROBS_BUDGET))
        if step.index - self.last < self.every and step.index != step.num_steps:
            return None
        from .recording import Later

        self.last = step.index
        return Later(step.log_probs.detach().float().exp(), encode_probs)


def encode_probs(probs: np.ndarray) -> np.ndarray:
    """Probabilities → uint8 p × 255, rounded."""
    return np.rint(np.clip(probs, 0.0, 1.0) * 255).astype(np.uint8)


def probs_of(row: np.ndarray) -> np.ndarray:
    """A kept class_probs row back as probabilities (float32); older run files kept float32 already."""
    row = np.asarray(row)
    return row.astype(np.float32) / 255 if row.dtype == np.uint8 else row.astype(np.float32, copy=False)


def class_shares(tracks: Any, upto: int) -> list[np.ndarray | None]:
    """The batch's mean p(k | x_t) at steps 0 … upto−1 (None where a step has none); from the per-sample rows
    for run files written before class_shares was kept."""
    if CLASS_SHARES in tracks:
        return list(tracks[CLASS_SHARES])[:upto]
    return [None if row is None else probs_of(row).mean(axis=0) for row in list(tracks.get(CLASS_PROBS, ()))[:upto]]


def _distance(a: Tensor | None, b: Tensor | None) -> Later | None:
    from .recording import Later

    return None if a is None or b is None else Later(rms_distance(a, b))


# --- arrow fields over the plane -----------------------------------------------------------------

def plane_grid(x_range: tuple[float, float], y_range: tuple[float, float], n: int) -> tuple[np.ndarray, float]:
    """Centres of square cells covering the rectangle x_range × y_range, n cells along its shorter side:
    (points (N, 2) float32, the cell side)."""
    (x0, x1), (y0, y1) = x_range, y_range
    side = min(x1 - x0, y1 - y0) / n
    xs = x0 + side * (np.arange(max(1, round((x1 - x0) / side))) + 0.5)
    ys = y0 + side * (np.arange(max(1, round((y1 - y0) / side))) + 0.5)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32), float(side)


def arrow_scale(fields: Iterable[np.ndarray | None], spacing: float, percentile: float = 95.0) -> float:
    """One length factor for all given vector fields (N, 2), so that their `percentile` arrow spans 0.9 of
    the grid spacing: arrows of different fields then compare by length."""
    lengths = [np.linalg.norm(f, axis=1) for f in fields if f is not None and len(f)]
    if not lengths:
        return 0.0
    top = float(np.percentile(np.concatenate(lengths), percentile))
    return 0.9 * spacing / top if top > 0 else 0.0


def arrow_segments(origins: np.ndarray, vectors: np.ndarray, max_length: float, head: float = 0.3,
                   angle: float = 0.45) -> np.ndarray:
    """Line segments drawing an arrow from each origin along its vector: (6N, 2) points, consecutive
    pairs are segments (shaft, then the two strokes of the head). Arrows longer than `max_length` are
    shortened to it; zero vectors draw nothing visible."""
    origins = np.asarray(origins, np.float64)
    vectors = np.asarray(vectors, np.float64)
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors * np.minimum(1.0, max_length / np.maximum(length, 1e-12))
    tips = origins + vectors
    back = -vectors * head
    cos, sin = math.cos(angle), math.sin(angle)
    left = np.stack([cos * back[:, 0] - sin * back[:, 1], sin * back[:, 0] + cos * back[:, 1]], axis=1)
    right = np.stack([cos * back[:, 0] + sin * back[:, 1], -sin * back[:, 0] + cos * back[:, 1]], axis=1)
    out = np.empty((len(origins), 6, 2))
    out[:, 0], out[:, 1] = origins, tips
    out[:, 2], out[:, 3] = tips, tips + left
    out[:, 4], out[:, 5] = tips, tips + right
    return out.reshape(-1, 2)


def field_vectors(request: Any, bundle: Any, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(model, guidance) vector fields (N, 2) at `points` for update k of `request`: −ε (the direction
    of the score ∇log p_t, i.e. where the update moves points without guidance) and −Δε (where guidance
    pushes them; None without guidance at that update)."""
    import torch

    from .samplers import update_terms

    terms = update_terms(request, bundle, torch.from_numpy(np.asarray(points, np.float32)), k)
    model = -terms.eps.float().cpu().numpy()
    deltas = [d for d in (terms.cfg_term, terms.classifier_term) if d is not None]
    guidance = None if not deltas else -sum(deltas).float().cpu().numpy()
    return model, guidance


# --- class probabilities -------------------------------------------------------------------------

def top_classes(probs: np.ndarray, target: int | None = None, k: int = 10) -> np.ndarray:
    """The indices of the k most probable classes, most probable first; the target is appended when it
    is not among them (so it is always shown)."""
    probs = np.asarray(probs, np.float64)
    order = np.argsort(-probs, kind="stable")[:k]
    if target is not None and 0 <= target < len(probs) and target not in order:
        order = np.append(order, target)
    return order
