"""The guided-diffusion UNet run on p×p pixel patches ("space to depth"), for small built-in models.

A (B, C, S, S) image is rearranged losslessly into (B, p²C, S/p, S/p) (`pixel_unshuffle`), denoised by
an ordinary `UNetModel` at 1/p of the resolution, and rearranged back (as DiT and U-ViT patchify
their inputs). Every convolution touches p² times fewer positions, so the network costs about p²×
less than the same UNet at full size: minutes instead of hours of training, and about a second
instead of tens of seconds of sampling on a laptop CPU. State-dict keys are the UNet's under `unet.`.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .unet import UNetModel


class PatchedUNet(nn.Module):
    """x (B, in_channels, S, S), t (B,), y (B,) or None → ε (B, out_channels, S, S).

    `patch` is the side of the pixel patches (S must be a multiple); the remaining keywords are
    `UNetModel`'s, given at the image's own size and channel count.
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int] = (), patch: int = 2, **unet):
        super().__init__()
        if patch < 1 or image_size % patch:
            raise ValueError(f"An image of {image_size} pixels cannot be cut into {patch}×{patch} patches.")
        self.patch = patch
        self.unet = UNetModel(image_size=image_size // patch, in_channels=in_channels * patch ** 2,
                              model_channels=model_channels, out_channels=out_channels * patch ** 2,
                              num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions, **unet)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return F.pixel_shuffle(self.unet(F.pixel_unshuffle(x, self.patch), t, y), self.patch)
