"""The engine's model contract around diffusers networks: `net(x, t, cond) → ε` (float32).

Each wrapper casts x_t to the network's dtype, calls it the way its reference pipeline does, and turns the
output into ε: v-prediction (ε = √ᾱ_t·v + √(1−ᾱ_t)·x_t) and x0-prediction (ε = (x_t − √ᾱ_t·x̂0)/√(1−ᾱ_t))
are converted here, with ᾱ from the scheduler config, so guidance and the samplers only ever see ε.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class EpsFromPrediction(nn.Module):
    """Turns a network's `prediction_type` output into ε at (x_t, t); ᾱ_t comes from the training table."""

    def __init__(self, prediction_type: str, alphas_cumprod: np.ndarray):
        super().__init__()
        self.prediction_type = prediction_type
        # float32 like the schedulers, which do this arithmetic in the sample's dtype
        self.register_buffer("alphas_cumprod", torch.tensor(alphas_cumprod, dtype=torch.float32), persistent=False)

    def forward(self, out: Tensor, x: Tensor, t: Tensor) -> Tensor:
        if self.prediction_type == "epsilon":
            return out
        abar = self.alphas_cumprod[t].view(-1, *([1] * (x.dim() - 1)))
        if self.prediction_type == "v_prediction":
            return abar.sqrt() * out + (1 - abar).sqrt() * x
        return (x - abar.sqrt() * out) / (1 - abar).sqrt()  # "sample": the network predicts x0


class PixelUNet(nn.Module):
    """UNet2DModel: `cond` is None or class labels (B,) for a `num_class_embeds` model.

    A network with 2·C output channels (learned variance) returns ε and the variance channels.
    """

    def __init__(self, unet: nn.Module, to_eps: EpsFromPrediction):
        super().__init__()
        self.unet, self.to_eps = unet, to_eps

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        out = self.unet(x.to(self.unet.dtype), t, class_labels=cond).sample.float()
        c = x.shape[1]
        if out.shape[1] == 2 * c:
            return torch.cat([self.to_eps(out[:, :c], x, t), out[:, c:]], dim=1)
        return self.to_eps(out, x, t)


class TextUNet(nn.Module):
    """UNet2DConditionModel (Stable Diffusion 1.x/2.x): `cond` is prompt embeddings (B, L, D)."""

    def __init__(self, unet: nn.Module, to_eps: EpsFromPrediction):
        super().__init__()
        self.unet, self.to_eps = unet, to_eps

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        out = self.unet(x.to(self.unet.dtype), t, encoder_hidden_states=cond, return_dict=False)[0]
        return self.to_eps(out.float(), x, t)


class DiT(nn.Module):
    """DiTTransformer2DModel: `cond` is class labels (B,), 1000 being the null class.

    As DiTPipeline does, the first C output channels are ε (what CFG combines) and a learned-variance
    half, when there is one, is returned after them for the engine's `learned_range` option; the
    pipeline itself drops it, which is our `fixed_*` variances.
    """

    def __init__(self, transformer: nn.Module, to_eps: EpsFromPrediction):
        super().__init__()
        self.transformer, self.to_eps = transformer, to_eps

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        out = self.transformer(x.to(self.transformer.dtype), timestep=t, class_labels=cond).sample.float()
        c = x.shape[1]
        eps = self.to_eps(out[:, :c], x, t)
        return torch.cat([eps, out[:, c:]], dim=1) if out.shape[1] == 2 * c else eps
