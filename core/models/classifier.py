"""The noise-aware classifier of guided-diffusion: the UNet's down path plus a pooling head.

classifier(x (B, C, S, S), t (B,)) → logits (B, out_channels). Keywords carry guided-diffusion's
`EncoderUNetModel` names and defaults (`attention_resolutions` as downsample rates, see unet.py).
`pool` is one of:
- "adaptive": norm, SiLU, global average, zero-initialised 1×1 conv (keys out.0, out.3);
- "attention": norm, SiLU, attention pooling (out.2.positional_embedding / qkv_proj / c_proj;
  needs num_head_channels, as the published classifiers use 64);
- "spatial" / "spatial_v2": an MLP over the spatial means of every block's output.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .mlp import timestep_embedding
from .unet import encoder_half
from .unet_blocks import AttentionPool2d, GroupNorm32, zeroed

POOLS = ("adaptive", "attention", "spatial", "spatial_v2")


class EncoderUNetModel(nn.Module):
    """Half a UNet ending in a pooled classification head (see the module docstring)."""

    cuda_graph_safe = True  # no host reads of tensor values: fit for core.cuda_graphs

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float = 0.0,
                 channel_mult: Sequence[float] = (1, 2, 4, 8), conv_resample: bool = True,
                 num_heads: int = 1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False,
                 use_new_attention_order: bool = False, pool: str = "adaptive"):
        super().__init__()
        del num_heads_upsample  # accepted for compatibility with guided-diffusion; there is no up path
        if pool not in POOLS:
            raise ValueError(f"Unknown classifier pooling {pool!r}; choose one of {', '.join(POOLS)}.")
        if pool == "attention" and num_head_channels == -1:
            raise ValueError("Attention pooling needs num_head_channels (the published classifiers use 64).")
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels = model_channels
        self.pool = pool
        enc = encoder_half(image_size, in_channels, model_channels, num_res_blocks, attention_resolutions,
                           dropout, channel_mult, conv_resample, num_heads, num_head_channels,
                           use_scale_shift_norm, resblock_updown, use_new_attention_order)
        self.time_embed = enc.time_embed
        self.input_blocks = enc.input_blocks
        self.middle_block = enc.middle_block
        ch = enc.ch
        if pool == "adaptive":
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                                     zeroed(nn.Conv2d(ch, out_channels, 1)), nn.Flatten())
        elif pool == "attention":
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(),
                                     AttentionPool2d(image_size // enc.ds, ch, num_head_channels, out_channels))
        else:
            features = sum(enc.block_channels) + ch
            if pool == "spatial":
                self.out = nn.Sequential(nn.Linear(features, 2048), nn.ReLU(), nn.Linear(2048, out_channels))
            else:
                self.out = nn.Sequential(nn.Linear(features, 2048), GroupNorm32(2048), nn.SiLU(),
                                         nn.Linear(2048, out_channels))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        spatial = self.pool.startswith("spatial")
        means = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            if spatial:
                means.append(h.float().mean(dim=(2, 3)))
        h = self.middle_block(h, emb)
        if spatial:
            means.append(h.float().mean(dim=(2, 3)))
            return self.out(torch.cat(means, dim=-1))
        return self.out(h)
