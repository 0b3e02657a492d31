"""Fast live previews of latents: a linear map latent → RGB, fitted from the model's own VAE.

Each latent position of an f×-downsampling VAE stands for an f×f pixel block, and over smooth images its
colour is close to an affine function of the latent vector. `fit_latent_rgb` measures that function:
it encodes smooth random colour fields with the VAE's encoder (posterior mean, scaled as the sampler sees
latents), averages every f×f pixel block to one colour, and solves least squares for rgb = z·M + b
(M: C×3, b: 3). A second set of images, never seen by the fit, gives the R² that is reported.
Applying the map costs one tiny matmul per frame; the exact picture is always `bundle.decode`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LatentRGB:
    """rgb = z·M + b at every latent position; `matrix` is C rows of 3, images come out in [−1, 1]."""

    matrix: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float]
    r2: float = float("nan")  # on held-out images, when fitted
    _tensors: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def tensors(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """M (C, 3) and b (3,) as float32 on `device`, copied there once: a copy to a GPU waits for it, and
        a preview at every step must not."""
        if device not in self._tensors:
            self._tensors[device] = (torch.tensor(self.matrix, dtype=torch.float32, device=device),
                                     torch.tensor(self.bias, dtype=torch.float32, device=device))
        return self._tensors[device]

    def apply(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) latents → (B, 3, h, w) RGB in [−1, 1], at latent resolution."""
        m, b = self.tensors(latents.device)
        rgb = torch.einsum("bchw,ck->bkhw", latents.float(), m) + b[:, None, None]
        return rgb.clamp(-1.0, 1.0)

    def to_dict(self) -> dict:
        return {"matrix": [list(r) for r in self.matrix], "bias": list(self.bias), "r2": self.r2}


def smooth_colour_fields(count: int, size: int, generator: torch.Generator) -> Tensor:
    """`count` images (count, 3, size, size) in [−1, 1]: random colours on a coarse grid, bicubically
    enlarged, so that each small block is nearly one colour; a quarter of them are flat colours."""
    grid = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    images = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True).clamp(-1, 1)
    flat = torch.rand(count // 4, 3, 1, 1, generator=generator) * 2 - 1
    images[: count // 4] = flat.expand(-1, -1, size, size)
    return images


def _encode(vae: nn.Module, images: Tensor, scaling_factor: float, shift_factor: float) -> Tensor:
    param = next(vae.parameters())
    latents = vae.encode(images.to(param.device, param.dtype)).latent_dist.mean.float()
    return (latents - shift_factor) * scaling_factor


def _pairs(vae: nn.Module, images: Tensor, factor: int, scaling: float, shift: float) -> tuple[Tensor, Tensor]:
    """(N, C) latents and (N, 3) mean block colours, one row per latent position."""
    z = _encode(vae, images, scaling, shift).cpu()
    colours = F.avg_pool2d(images, factor)
    if colours.shape[-2:] != z.shape[-2:]:
        raise ValueError(f"The VAE maps {images.shape[-1]} pixels to {z.shape[-1]} latents, not 1/{factor}.")
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), colours.permute(0, 2, 3, 1).reshape(-1, 3)


@torch.no_grad()
def fit_latent_rgb(vae: nn.Module, factor: int, scaling_factor: float, shift_factor: float = 0.0, *,
                   images: int = 16, size: int | None = None, seed: int = 0) -> LatentRGB:
    """Least-squares latent → RGB map of `vae` (see the module docstring); deterministic for a seed."""
    size = size or 8 * factor
    generator = torch.Generator().manual_seed(seed)
    fit_z, fit_rgb = _pairs(vae, smooth_colour_fields(images, size, generator), factor, scaling_factor, shift_factor)
    test_z, test_rgb = _pairs(vae, smooth_colour_fields(images // 2 or 1, size, generator), factor,
                              scaling_factor, shift_factor)
    design = torch.cat([fit_z, torch.ones(len(fit_z), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, fit_rgb.double()).solution.float()
    matrix, bias = solution[:-1], solution[-1]
    predicted = test_z @ matrix + bias
    r2 = 1.0 - float(((predicted - test_rgb) ** 2).sum() / ((test_rgb - test_rgb.mean(0)) ** 2).sum())
    return LatentRGB(tuple(tuple(float(v) for v in row) for row in matrix), tuple(float(v) for v in bias), r2)
