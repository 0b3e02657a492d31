"""Recover a guided-diffusion network's layout from its state-dict shapes alone.

The weights fix widths, depth, levels, attention placement, scale-shift norm, resblock up/down, class
conditioning, learned sigma and the classifier's head, but NOT: the image size (a UNet has no
positional weights; the attention-pooling classifier pins it), the attention heads and their order,
and the noise schedule. Those come from flags, a preset or guided-diffusion's defaults.

Levels L and res-blocks per level n are found by trying every split with L·(n+1) input blocks and
keeping those whose channels, attention and downsamplers are consistent; more than one survivor is
reported as ambiguous.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..checkpoints import CheckpointError

State = dict[str, Tensor]


@dataclass(frozen=True)
class Layer:
    """One layer of a block: kind ∈ res, attn, down (strided conv), up (conv after ×2), conv (stem)."""

    kind: str
    c_in: int
    c_out: int


def _layers(state: State, prefix: str) -> dict[int, list[Layer]]:
    """Block index → its layers in order, for keys `prefix.<block>.<layer>.…`."""
    found: dict[int, dict[int, Layer]] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != prefix or len(parts) < 4 or not (parts[1].isdigit() and parts[2].isdigit()):
            continue
        block, layer, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
        kind = None
        if rest == "in_layers.2.weight":
            kind, c_in, c_out = "res", state[key.replace("in_layers.2.weight", "in_layers.0.weight")].shape[0], value.shape[0]
        elif rest == "qkv.weight":
            kind, c_in, c_out = "attn", value.shape[1], value.shape[1]
        elif rest == "op.weight":
            kind, c_in, c_out = "down", value.shape[1], value.shape[0]
        elif rest == "conv.weight":
            kind, c_in, c_out = "up", value.shape[1], value.shape[0]
        if kind is not None:
            found.setdefault(block, {})[layer] = Layer(kind, int(c_in), int(c_out))
    return {b: [layers[i] for i in sorted(layers)] for b, layers in found.items()}


def _count(state: State, prefix: str) -> int:
    indices = [int(k.split(".")[1]) for k in state if k.startswith(prefix + ".") and k.split(".")[1].isdigit()]
    return max(indices) + 1 if indices else 0


def _require(state: State, key: str, what: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"This file does not look like a guided-diffusion {what}: it has no {key!r} weight.")
    return state[key]


@dataclass(frozen=True)
class _Fit:
    levels: int
    per_level: int
    widths: tuple[int, ...]
    rates: tuple[int, ...]
    resblock_updown: bool
    conv_resample: bool


def _fit_encoder(blocks: dict[int, list[Layer]], count: int, first: int, levels: int, per_level: int) -> _Fit | None:
    """Check the input blocks against L levels of n res-blocks each; the fit, or None."""
    pos, ch = 1, first
    widths, rates, modes = [], [], set()
    for level in range(levels):
        width, with_attn = None, None
        for _ in range(per_level):
            layers = blocks.get(pos, [])
            kinds = [layer.kind for layer in layers]
            if kinds not in (["res"], ["res", "attn"]) or layers[0].c_in != ch:
                return None
            width = width or layers[0].c_out
            if layers[0].c_out != width or with_attn not in (None, len(kinds) == 2):
                return None
            with_attn = len(kinds) == 2
            ch, pos = width, pos + 1
        widths.append(width)
        if with_attn:
            rates.append(2 ** level)
        if level < levels - 1:
            layers = blocks.get(pos, [])
            kinds = [layer.kind for layer in layers]
            if kinds == ["down"] and layers[0].c_in == layers[0].c_out == ch:
                modes.add("conv")
            elif kinds == ["res"] and layers[0].c_in == layers[0].c_out == ch:
                modes.add("updown")
            elif not kinds:
                modes.add("pool")
            else:
                return None
            pos += 1
    if pos != count or len(modes) > 1:
        return None
    mode = modes.pop() if modes else "conv"
    return _Fit(levels, per_level, tuple(widths), tuple(rates), mode == "updown", mode != "pool")


def _fit_decoder(blocks: dict[int, list[Layer]], count: int, fit: _Fit) -> bool:
    """Do the output blocks have upsamplers and attention where `fit` puts them?"""
    if count != fit.levels * (fit.per_level + 1):
        return False
    for j in range(count):
        level = fit.levels - 1 - j // (fit.per_level + 1)
        kinds = [layer.kind for layer in blocks.get(j, [])]
        expect = ["res"] + (["attn"] if 2 ** level in fit.rates else [])
        if level and j % (fit.per_level + 1) == fit.per_level:
            if fit.resblock_updown:
                expect.append("res")
            elif fit.conv_resample:
                expect.append("up")
        if kinds != expect:
            return False
    return True


def _fits(state: State, first: int, with_decoder: bool) -> list[_Fit]:
    inputs = _layers(state, "input_blocks")
    count = _count(state, "input_blocks")
    outputs, out_count = _layers(state, "output_blocks"), _count(state, "output_blocks")
    found = []
    for levels in range(1, count + 1):
        if count % levels or count // levels < 2:
            continue
        fit = _fit_encoder(inputs, count, first, levels, count // levels - 1)
        if fit is not None and (not with_decoder or _fit_decoder(outputs, out_count, fit)):
            found.append(fit)
    return found


def _one_fit(state: State, first: int, with_decoder: bool, what: str) -> _Fit:
    fits = _fits(state, first, with_decoder)
    if not fits:
        raise CheckpointError(f"The {what}'s blocks do not follow guided-diffusion's layout; give its flags.")
    if len(fits) > 1:
        options = " or ".join(f"{f.levels} levels of {f.per_level} res-blocks" for f in fits)
        raise ValueError(f"The {what}'s layout is ambiguous ({options}); give its flags.")
    return fits[0]


def _mults(widths: tuple[int, ...], model_channels: int) -> list[float]:
    return [w // model_channels if w % model_channels == 0 else w / model_channels for w in widths]


def _common(state: State, fit: _Fit, model_channels: int) -> dict[str, Any]:
    middle = _require(state, "middle_block.0.in_layers.2.weight", "network").shape[0]
    emb_out = state["middle_block.0.emb_layers.1.weight"].shape[0]
    return dict(
        in_channels=int(state["input_blocks.0.0.weight"].shape[1]), model_channels=model_channels,
        num_res_blocks=fit.per_level, attention_resolutions=list(fit.rates), dropout=0.0,
        channel_mult=_mults(fit.widths, model_channels), conv_resample=fit.conv_resample,
        use_scale_shift_norm=bool(emb_out == 2 * middle), resblock_updown=fit.resblock_updown,
    )


def is_unet(state: State) -> bool:
    """A diffusion UNet has output blocks; a classifier does not."""
    return any(k.startswith("output_blocks.") for k in state)


def _shapes_checked(infer: Callable[[State], dict[str, Any]]) -> Callable[[State], dict[str, Any]]:
    """Weights whose shapes fit no layout at all (a scalar where a matrix goes, a 1-D convolution) give a
    CheckpointError, not the IndexError of reading a dimension they do not have."""
    @functools.wraps(infer)
    def checked(state: State) -> dict[str, Any]:
        try:
            return infer(state)
        except (IndexError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"The weights do not have the shapes of a guided-diffusion network "
                                  f"({type(exc).__name__}: {exc}).") from None
    return checked


@_shapes_checked
def infer_unet(state: State) -> dict[str, Any]:
    """`unet` keywords fixed by the weights (no image_size, heads or attention order), plus `levels`."""
    model_channels = int(_require(state, "time_embed.0.weight", "diffusion model").shape[1])
    if not is_unet(state):
        raise CheckpointError("This is a classifier checkpoint, not a diffusion model; open it as the classifier.")
    first = int(_require(state, "input_blocks.0.0.weight", "diffusion model").shape[0])
    fit = _one_fit(state, first, True, "diffusion model")
    network = _common(state, fit, model_channels)
    label = state.get("label_emb.weight")
    network.update(out_channels=int(_require(state, "out.2.weight", "diffusion model").shape[0]),
                   num_classes=None if label is None else int(label.shape[0]))
    return {"levels": fit.levels, **network}


@_shapes_checked
def infer_classifier(state: State) -> dict[str, Any]:
    """`unet-classifier` keywords fixed by the weights (no image_size or heads), plus `levels` and,
    for attention pooling, `pool_size` (the side of the feature map the pool was built for)."""
    model_channels = int(_require(state, "time_embed.0.weight", "classifier").shape[1])
    if is_unet(state):
        raise CheckpointError("This is a diffusion model checkpoint, not a classifier.")
    first = int(_require(state, "input_blocks.0.0.weight", "classifier").shape[0])
    fit = _one_fit(state, first, False, "classifier")
    network = _common(state, fit, model_channels)
    extra: dict[str, Any] = {"levels": fit.levels}
    if "out.2.positional_embedding" in state:
        pos = state["out.2.positional_embedding"]
        side = round((pos.shape[1] - 1) ** 0.5)
        if side * side + 1 != pos.shape[1]:
            raise CheckpointError("The classifier's attention-pool embedding is not square.")
        network.update(pool="attention", out_channels=int(state["out.2.c_proj.weight"].shape[0]))
        extra["pool_size"] = side
    elif state.get("out.0.weight") is not None and state["out.0.weight"].dim() == 2:  # an MLP head
        last = "out.3.weight" if "out.3.weight" in state else "out.2.weight"
        network.update(pool="spatial_v2" if last == "out.3.weight" else "spatial",
                       out_channels=int(_require(state, last, "classifier").shape[0]))
    elif "out.3.weight" in state and state["out.3.weight"].dim() == 4:
        network.update(pool="adaptive", out_channels=int(state["out.3.weight"].shape[0]))
    else:
        raise CheckpointError("The classifier's output head is not one guided-diffusion builds.")
    return {**extra, **network}
