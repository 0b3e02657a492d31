"""The guided-diffusion UNet: ε(x_t, t, y) for images, state-dict compatible with openai's checkpoints.

Constructor keywords carry guided-diffusion's `UNetModel` names and defaults, JSON-able values only.
`attention_resolutions` lists DOWNSAMPLE RATES, as `UNetModel` takes them (2 means "at half the
input size"); `core.guided_diffusion` converts the command-line flag, which lists resolutions.
`channel_mult` may hold fractions (the 512×512 model starts at 0.5). Every normalised width must be a
multiple of 32. fp16 is applied from outside with autocast (the bundle's precision), so there is no
`use_fp16`; gradient checkpointing (`use_checkpoint`) is a training device and not offered.

Built-in models use small widths of the same network; a class-conditional model with a null label
is built with num_classes = K + 1 embedding rows, the last row being "no label".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .mlp import timestep_embedding
from .unet_blocks import AttentionBlock, Downsample, EmbedSequential, GroupNorm32, ResBlock, Upsample, zeroed


def _check_common(image_size: int, in_channels: int, model_channels: int, num_res_blocks: int,
                  channel_mult: Sequence[float], attention_resolutions: Sequence[int]) -> None:
    if image_size < 1 or in_channels < 1 or model_channels < 1 or num_res_blocks < 0:
        raise ValueError("image_size, in_channels and model_channels must be positive, num_res_blocks ≥ 0.")
    if not channel_mult:
        raise ValueError("channel_mult needs at least one level.")
    if image_size % 2 ** (len(channel_mult) - 1):
        raise ValueError(f"An image of {image_size} pixels cannot be halved {len(channel_mult) - 1} times.")
    bad = [r for r in attention_resolutions if int(r) < 1]
    if bad:
        raise ValueError(f"attention_resolutions holds downsample rates (1, 2, 4, …), not {bad[0]}.")


@dataclass(frozen=True)
class EncoderParts:
    """The shared down path of the UNet and the classifier, built by `encoder_half`.

    time_embed: model_channels → 4·model_channels → 4·model_channels. block_channels: the output
    channels of every input block (the UNet's skip connections). ch: the middle width. ds: the
    total downsample rate at the middle block.
    """

    time_embed: nn.Sequential
    input_blocks: nn.ModuleList
    middle_block: EmbedSequential
    block_channels: list[int]
    ch: int
    ds: int
    emb_dim: int


def encoder_half(image_size: int, in_channels: int, model_channels: int, num_res_blocks: int,
                 attention_resolutions: Sequence[int], dropout: float, channel_mult: Sequence[float],
                 conv_resample: bool, num_heads: int, num_head_channels: int, use_scale_shift_norm: bool,
                 resblock_updown: bool, use_new_attention_order: bool) -> EncoderParts:
    """Time embedding, input blocks and middle block in guided-diffusion's layout."""
    _check_common(image_size, in_channels, model_channels, num_res_blocks, channel_mult, attention_resolutions)
    emb_dim = 4 * model_channels
    rates = {int(r) for r in attention_resolutions}

    def res(ch_in: int, ch_out: int, **kw) -> ResBlock:
        return ResBlock(ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm=use_scale_shift_norm, **kw)

    def attn(ch: int) -> AttentionBlock:
        return AttentionBlock(ch, num_heads, num_head_channels, use_new_attention_order)

    ch = int(channel_mult[0] * model_channels)
    input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
    block_channels = [ch]
    ds = 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
            ch = int(mult * model_channels)
            if ds in rates:
                layers.append(attn(ch))
            input_blocks.append(EmbedSequential(*layers))
            block_channels.append(ch)
        if level != len(channel_mult) - 1:
            down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
            input_blocks.append(EmbedSequential(down))
            block_channels.append(ch)
            ds *= 2
    time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
    middle_block = EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
    return EncoderParts(time_embed, input_blocks, middle_block, block_channels, ch, ds, emb_dim)


class UNetModel(nn.Module):
    """x (B, in_channels, S, S), t (B,), y (B,) long or None → (B, out_channels, S, S).

    With `num_classes` set, y is required and its embedding (key `label_emb.weight`) is added to the
    timestep embedding; without it y must be None.
    """

    cuda_graph_safe = True  # no host reads of tensor values: fit for core.cuda_graphs
    compilable = True  # no data-dependent control flow: torch.export traces it (core.compiled)

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float = 0.0,
                 channel_mult: Sequence[float] = (1, 2, 4, 8), conv_resample: bool = True,
                 num_classes: int | None = None, num_heads: int = 1, num_head_channels: int = -1,
                 num_heads_upsample: int = -1, use_scale_shift_norm: bool = False,
                 resblock_updown: bool = False, use_new_attention_order: bool = False):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.num_classes = num_classes or None
        enc = encoder_half(image_size, in_channels, model_channels, num_res_blocks, attention_resolutions,
                           dropout, channel_mult, conv_resample, num_heads, num_head_channels,
                           use_scale_shift_norm, resblock_updown, use_new_attention_order)
        # Registered in guided-diffusion's order so that state_dict() lists keys the same way.
        self.model_channels = model_channels
        self.time_embed = enc.time_embed
        if self.num_classes is not None:
            self.label_emb = nn.Embedding(self.num_classes, enc.emb_dim)
        self.input_blocks = enc.input_blocks
        self.middle_block = enc.middle_block
        self.output_blocks = nn.ModuleList()

        rates = {int(r) for r in attention_resolutions}
        skips = list(enc.block_channels)
        ch, ds = enc.ch, enc.ds
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                width = int(model_channels * mult)
                layers: list[nn.Module] = [ResBlock(ch + skips.pop(), enc.emb_dim, dropout, width,
                                                   use_scale_shift_norm=use_scale_shift_norm)]
                ch = width
                if ds in rates:
                    layers.append(AttentionBlock(ch, num_heads_upsample, num_head_channels,
                                                 use_new_attention_order))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, enc.emb_dim, dropout, ch, use_scale_shift_norm=use_scale_shift_norm,
                                           up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        first = int(channel_mult[0] * model_channels)
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), zeroed(nn.Conv2d(first, out_channels, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if (y is None) != (self.num_classes is None):
            raise ValueError("This UNet needs class labels." if y is None
                             else "This UNet is unconditional and takes no class labels.")
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop().to(h.dtype)], dim=1), emb)
        return self.out(h)
