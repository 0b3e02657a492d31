"""The guided-diffusion UNet run on p×p pixel patches ("space to depth"), for small built-in models.

A (B, C, S, S) image is rearranged losslessly into (B, p²C, S/p, S/p) (`pixel_unshuffle`), denoised by
an ordinary `UNetModel` at 1/p of the resolution, and rearranged back (as DiT and U-ViT patchify
their inputs). Every convolution touches p² times fewer positions, so the network costs about p²×
less than the same UNet at full size: minutes instead of hours of training, and about a second
instead of tens of seconds of sampling on a laptop CPU. State-dict keys are the UNet's under `unet.`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..schedule import Schedule
from .unet import UNetModel

PARAMETRIZATIONS = ("eps", "v")


class PatchedUNet(nn.Module):
    """x (B, in_channels, S, S), t (B,), y (B,) or None → ε (B, out_channels, S, S).

    `patch` is the side of the pixel patches (S must be a multiple); the remaining keywords are
    `UNetModel`'s, given at the image's own size and channel count.

    parametrization "v": the UNet predicts v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (Salimans & Ho 2022) and the
    module returns ε = √ᾱ_t v + √(1−ᾱ_t) x_t, so callers still receive ε. Near t = T, ε ≈ x_t comes
    for free instead of having to be reproduced to within √ᾱ_t by the network (an ε error δ becomes
    an x̂0 error δ/√ᾱ_t, i.e. ×50 at t = 900 of the linear schedule); `schedule` and `num_timesteps`
    name the ᾱ_t used, which must be the model's own.
    """

    cuda_graph_safe = True  # no host reads of tensor values: fit for core.cuda_graphs
    compilable = True  # no data-dependent control flow: torch.export traces it (core.compiled)

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int] = (), patch: int = 2,
                 parametrization: str = "eps", schedule: str = "linear", num_timesteps: int = 1000, **unet):
        super().__init__()
        if patch < 1 or image_size % patch:
            raise ValueError(f"An image of {image_size} pixels cannot be cut into {patch}×{patch} patches.")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"Unknown parametrization {parametrization!r}; use one of {', '.join(PARAMETRIZATIONS)}.")
        if parametrization == "v" and out_channels != in_channels:
            raise ValueError("The v parametrization needs as many output channels as input channels.")
        self.patch, self.parametrization = patch, parametrization
        abar = Schedule.from_name(schedule, num_timesteps).alphas_cumprod
        self.register_buffer("alphas_cumprod", torch.as_tensor(abar, dtype=torch.float32), persistent=False)
        self.unet = UNetModel(image_size=image_size // patch, in_channels=in_channels * patch ** 2,
                              model_channels=model_channels, out_channels=out_channels * patch ** 2,
                              num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions, **unet)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        out = F.pixel_shuffle(self.unet(F.pixel_unshuffle(x, self.patch), t, y), self.patch)
        if self.parametrization == "eps":
            return out
        index = t.round().long().clamp(0, len(self.alphas_cumprod) - 1)
        abar = self.alphas_cumprod[index].view(-1, *([1] * (x.dim() - 1))).to(out.dtype)
        return abar.sqrt() * out + (1 - abar).sqrt() * x
