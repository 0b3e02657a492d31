"""`DiffusersBundle`: a diffusers pipeline behind the engine's `ModelBundle` hooks.

config.network holds what the hooks need, JSON-able: "family" (pixel / dit / sd), "pipeline" (the
pipeline class), "scheduler" (the scheduler config), "prediction_type", and for latent models
"vae_scale_factor", "scaling_factor", "shift_factor". The networks themselves are wrapped by
core/diffusers/networks.py so that `model(x, t, cond)` returns ε.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from ..bundle import ModelBundle
from ..conditioning import Conditions
from ..schedule import Schedule
from .preview import LatentRGB, fit_latent_rgb
from .schedules import pipeline_schedule, train_alphas_cumprod

if TYPE_CHECKING:
    from ..requests import SamplingRequest

_DECODE_CHUNK = 4  # images per VAE decode call: bounds the decoder's working memory


@dataclass(eq=False)
class DiffusersBundle(ModelBundle):
    """A loaded diffusers pipeline. `vae` (latent models) decodes samples; `text_encoder` and `tokenizer`
    (Stable Diffusion) turn prompts into the condition batches."""

    vae: nn.Module | None = None
    text_encoder: nn.Module | None = None
    tokenizer: Any = None
    _latent_rgb: LatentRGB | None = field(default=None, repr=False)
    _prompt_cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    # Weights are loaded in the chosen dtype (half the memory of autocast over fp32 weights).
    PRECISIONS_ON: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "cuda": ("fp32", "fp16", "bf16"), "mps": ("fp32", "fp16"),
    }

    @property
    def family(self) -> str:
        return self.config.network["family"]

    @property
    def scheduler_config(self) -> Mapping[str, Any]:
        return self.config.network["scheduler"]

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None  # the networks already hold their weights in the run's dtype

    # --- schedule ---------------------------------------------------------------------------------

    @property
    def schedule(self) -> Schedule:
        return Schedule.from_alphas_cumprod(train_alphas_cumprod(self.scheduler_config))

    def sampling_schedule(self, steps: str, sampler: str = "ddim") -> Schedule:
        """A plain step count N: the timesteps the pipeline's scheduler picks for N steps (its
        timestep_spacing, steps_offset, set_alpha_to_one), so that samples equal the pipeline's.
        Guided-diffusion respacing strings ("ddim25", "10,15,20") respace the pipeline's ᾱ instead."""
        if steps.isdigit():
            return pipeline_schedule(self.scheduler_config, int(steps), sampler)
        return self.schedule.respace(steps)

    # --- space ------------------------------------------------------------------------------------

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def takes_prompt(self) -> bool:
        return self.text_encoder is not None

    @property
    def size_choice(self) -> bool:
        return self.family == "sd"

    @property
    def vae_scale_factor(self) -> int:
        return int(self.config.network.get("vae_scale_factor", 1))

    @property
    def image_size(self) -> tuple[int, int]:
        _, h, w = self.config.data_shape
        return w * self.vae_scale_factor, h * self.vae_scale_factor

    def sample_shape(self, request: "SamplingRequest") -> tuple[int, ...]:
        c = self.config.data_shape[0]
        width, height = self.image_size
        width, height = request.width or width, request.height or height
        if not self.size_choice and (width, height) != self.image_size:
            raise ValueError(f"{self.name!r} makes {self.image_size[0]}×{self.image_size[1]} images only.")
        f = self.vae_scale_factor
        if width % f or height % f:
            raise ValueError(f"The image size must be a multiple of {f} for {self.name!r}, got {width}×{height}.")
        return (c, height // f, width // f)

    @torch.no_grad()
    def decode(self, x: Tensor) -> Tensor:
        """Latents → images in [−1, 1] through the VAE (x/scaling_factor + shift_factor, as the pipelines
        do); pixel samples are returned as they are."""
        if self.vae is None:
            return x
        net = self.config.network
        dtype = next(self.vae.parameters()).dtype
        parts = []
        for chunk in x.split(_DECODE_CHUNK):
            z = chunk / net["scaling_factor"] + net.get("shift_factor", 0.0)
            parts.append(self.vae.decode(z.to(dtype)).sample.float().clamp(-1.0, 1.0))
        return torch.cat(parts)

    def latent_rgb(self) -> LatentRGB | None:
        """The linear latent → RGB map of this model's VAE (core/diffusers/preview.py), fitted the first time it
        is asked for (a few seconds for Stable Diffusion's VAE on a CPU: the app asks while the model loads)."""
        if self._latent_rgb is None and self.vae is not None:
            net = self.config.network
            self._latent_rgb = fit_latent_rgb(self.vae, self.vae_scale_factor, net["scaling_factor"],
                                              net.get("shift_factor", 0.0))
        return self._latent_rgb

    def preview(self, x: Tensor) -> Tensor:
        """Latents → the fitted linear RGB picture at latent resolution; pixel samples as they are."""
        return x if self.vae is None else self.latent_rgb().apply(x)

    # --- conditioning -----------------------------------------------------------------------------

    def conditions(self, request: "SamplingRequest") -> Conditions:
        if not self.takes_prompt:
            if request.prompt:
                raise ValueError(f"{self.name!r} is not conditioned on text; it takes no prompt.")
            return super().conditions(request)
        g = request.guidance
        if g.uses_classifier:
            raise ValueError(f"Classifier guidance needs a classifier, and {self.name!r} has none.")
        if request.label is not None:
            raise ValueError(f"{self.name!r} is guided by a prompt, not a class label.")
        batch = request.batch
        prompt = self.prompt_embeddings(request.prompt or "").expand(batch, -1, -1)
        negative = self.prompt_embeddings(request.negative_prompt).expand(batch, -1, -1)
        # "none" samples the unconditional branch: the negative prompt, or the empty one.
        return Conditions(base=negative, cond=prompt, null=negative, target=None)

    @torch.no_grad()
    def prompt_embeddings(self, text: str) -> Tensor:
        """(1, L, D) text-encoder states of `text`, padded and truncated to the tokenizer's length, exactly
        as StableDiffusionPipeline.encode_prompt computes them (no clip skip)."""
        if text not in self._prompt_cache:
            tokens = self.tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt")
            mask = None
            if getattr(self.text_encoder.config, "use_attention_mask", False):
                mask = tokens.attention_mask.to(self.device)
            states = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
            if len(self._prompt_cache) >= 8:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))
            self._prompt_cache[text] = states
        return self._prompt_cache[text]

    def to(self, device: torch.device | str) -> "DiffusersBundle":
        super().to(device)
        for part in (self.vae, self.text_encoder):
            if part is not None:
                part.to(self.device)
        self._prompt_cache.clear()
        return self
