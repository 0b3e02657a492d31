"""Building blocks of the guided-diffusion UNet family (Dhariwal & Nichol 2021), written from the
published architecture. Attribute names and their order inside `nn.Sequential`s are chosen so that
state-dict keys match guided-diffusion's checkpoints exactly (e.g. `in_layers.2.weight`,
`emb_layers.1.weight`, `out_layers.3.weight`, `qkv.weight`, `proj_out.weight`).

Shapes: feature maps are (B, C, H, W); `emb` is the timestep(+label) embedding, (B, E).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

GROUPS = 32  # every normalisation layer of the family uses 32 groups


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups whose statistics are computed in float32; the output has the input's dtype.

    float16/bfloat16 inputs are normalised as they are: the kernels (CPU and CUDA) accumulate the
    statistics and apply them in float32 themselves, so the activation is never copied to float32
    and back (guided-diffusion's way, and what autocast does to group_norm) — two fewer passes over
    every normalised tensor. Only the affine weights are rounded to the input's dtype.
    """

    def __init__(self, channels: int):
        if channels % GROUPS:
            raise ValueError(f"{channels} channels cannot be split into {GROUPS} normalisation groups; "
                             f"use a multiple of {GROUPS}.")
        super().__init__(GROUPS, channels)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            with torch.autocast(x.device.type, enabled=False):
                return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


def zeroed(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to zero (output layers start as the identity residual)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class EmbeddedBlock(nn.Module):
    """Marker: a block whose forward takes (x, emb)."""


class EmbedSequential(nn.Sequential):
    """A sequence whose `EmbeddedBlock` members also receive the embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, EmbeddedBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv (key `conv.*`) when `use_conv`. (B,C,H,W) → (B,C',2H,2W)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1) if use_conv else None
        if self.conv is None and out_channels != channels:
            raise ValueError("Upsampling without a convolution cannot change the channel count.")

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class Downsample(nn.Module):
    """Strided 3×3 conv (key `op.*`) or 2×2 average pooling. (B,C,H,W) → (B,C',H/2,W/2)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)
        elif out_channels != channels:
            raise ValueError("Average-pool downsampling cannot change the channel count.")
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(EmbeddedBlock):
    """Residual block conditioned on `emb`; optionally changes channels, or resamples (up/down).

    in_layers = [norm, SiLU, conv3×3]; emb_layers = [SiLU, linear → C' (or 2C' for scale-shift)];
    out_layers = [norm, SiLU, dropout, zero-initialised conv3×3]; skip_connection = identity, or a
    1×1 conv (3×3 when `use_conv`) when the channel count changes. With `use_scale_shift_norm`
    (AdaGN) h = norm(h)·(1+scale) + shift, otherwise h = h + emb before out_layers.
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_conv: bool = False, use_scale_shift_norm: bool = False, up: bool = False,
                 down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            kernel = 3 if use_conv else 1
            self.skip_connection = nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def heads_for(channels: int, num_heads: int, num_head_channels: int) -> int:
    """The number of attention heads: `num_heads`, unless `num_head_channels` ≠ −1 fixes the width."""
    if num_head_channels == -1:
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"{channels} attention channels cannot be split into {num_heads} heads.")
        return num_heads
    if num_head_channels < 1 or channels % num_head_channels:
        raise ValueError(f"{channels} attention channels are not a multiple of num_head_channels "
                         f"{num_head_channels}.")
    return channels // num_head_channels


def qkv_attention(qkv: Tensor, num_heads: int, legacy: bool) -> Tensor:
    """Multi-head self-attention over positions, token-major. qkv: (B, T, 3·H·c) → (B, T, H·c).

    legacy (guided-diffusion's default order): channels are laid out per head as [q|k|v], i.e. split
    heads first; the new order lays out [q of all heads | k | v]. Each head: softmax(q·kᵀ/√c)·v.
    """
    b, length, width = qkv.shape
    c = width // (3 * num_heads)
    if legacy:
        q, k, v = qkv.reshape(b, length, num_heads, 3 * c).transpose(1, 2).split(c, dim=-1)
    else:
        q, k, v = (part.reshape(b, length, num_heads, c).transpose(1, 2) for part in qkv.chunk(3, dim=-1))
    # scaled_dot_product_attention picks a fused kernel (flash or memory-efficient, CPU and CUDA) only
    # for (B, heads, T, c) inputs whose last dimension is contiguous; anything else takes the slow
    # reference path that materialises every T×T weight matrix. Token-major q, k, v are such views as
    # they are, with no copies.
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    return out.reshape(b, length, num_heads * c)


def pointwise(conv: nn.Conv1d, tokens: Tensor) -> Tensor:
    """A 1×1 Conv1d (its weights and keys kept: guided-diffusion's layout) applied to token-major
    (B, T, C_in) → (B, T, C_out): one matrix product over the channels, no convolution set-up."""
    return F.linear(tokens, conv.weight[:, :, 0], conv.bias)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual: x + proj_out(attn(qkv(norm(x)))). (B,C,H,W) → same."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False):
        super().__init__()
        self.num_heads = heads_for(channels, num_heads, num_head_channels)
        self.legacy = not use_new_attention_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        tokens = self.norm(x).transpose(1, 2)
        h = qkv_attention(pointwise(self.qkv, tokens), self.num_heads, self.legacy)
        return (x + pointwise(self.proj_out, h).transpose(1, 2)).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling: the mean token attends over [mean, positions].

    (B, C, S, S) → (B, out). Keys: positional_embedding (C, S²+1), qkv_proj, c_proj (1×1 Conv1d).
    """

    def __init__(self, spatial: int, channels: int, head_channels: int, out_channels: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(channels, spatial ** 2 + 1) / channels ** 0.5)
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.num_heads = heads_for(channels, 1, head_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        x = x + self.positional_embedding[None].to(x.dtype)
        x = qkv_attention(pointwise(self.qkv_proj, x.transpose(1, 2)), self.num_heads, legacy=False)
        return pointwise(self.c_proj, x[:, 0])  # the mean token's output only
