"""Small convolutional classifiers for 32×32 images.

`Judge` sees clean images only and is used only to EVALUATE samples (class agreement, and its
penultimate features for FID / precision / recall) — never for guidance, so guided samples cannot
game it through its own gradients. `NoisyConvClassifier` is the noise-aware p(y | x_t, t) used for
classifier guidance: residual conv blocks whose normalisation is scaled and shifted by a timestep
embedding (as in guided-diffusion's encoder classifier, much narrower).
"""
from __future__ import annotations

from torch import Tensor, nn

from .mlp import timestep_embedding


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Judge(nn.Module):
    """Clean images (B, C, 32, 32) in [−1, 1] → logits (B, K); `features` gives (B, 4·width)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, dropout: float = 0.3):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_conv(in_channels, w), nn.MaxPool2d(2),
            *_conv(w, w), *_conv(w, 2 * w), nn.MaxPool2d(2),
            *_conv(2 * w, 2 * w), *_conv(2 * w, 4 * w), nn.MaxPool2d(2),
            *_conv(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))
        self.feature_dim = 4 * w

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, 4·width): the penultimate activations (after global average pooling)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class _TimeResBlock(nn.Module):
    """GroupNorm → scale/shift by the embedding → SiLU → conv, twice, plus the skip. (B,C,H,W) → same."""

    def __init__(self, channels: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(nn.functional.silu(h))


class NoisyConvClassifier(nn.Module):
    """x_t (B, C, S, S), t (B,) original timesteps → logits (B, K).

    Stem at full size, then a strided conv to S/2 and one time-conditioned residual block per
    level (S/2, S/4, S/8), widths width, 2·width, 2·width.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.width = width
        emb_dim = 4 * width
        self.time_embed = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        widths = (width, 2 * width, 2 * width)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.downs = nn.ModuleList()
        self.blocks = nn.ModuleList()
        c_in = width
        for c in widths:
            self.downs.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
            self.blocks.append(_TimeResBlock(c, emb_dim))
            c_in = c
        self.out = nn.Sequential(nn.GroupNorm(8, c_in), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(c_in, num_classes))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.width))
        h = self.stem(x)
        for down, block in zip(self.downs, self.blocks):
            h = block(down(h), emb)
        return self.out(h)
