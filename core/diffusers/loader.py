"""Opening a diffusers pipeline folder (`save_pretrained` layout) as a `DiffusersBundle`.

`inspect_pipeline` reads only JSON and safetensors headers: which family the folder is, its components
and what the weights need in memory. `load_pipeline` then checks that against the device, loads each
component offline (local files only; `.bin` weights only through torch's weights-only unpickler) in the
run's dtype and wraps the denoiser so that it returns ε.

Families: "pixel" (UNet2DModel, unconditional or `num_class_embeds` class-conditional), "dit"
(DiTTransformer2DModel + AutoencoderKL, ImageNet labels with null class 1000), "sd" (UNet2DConditionModel +
CLIP text encoder + tokenizer + AutoencoderKL: Stable Diffusion 1.x/2.x).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..bundle import PRECISIONS, ModelConfig
from ..checkpoints import CheckpointError
from ..device import free_memory, resolve_device
from . import files
from .bundle import DiffusersBundle
from .deps import require, weights_only_loading
from .networks import DiT, EpsFromPrediction, PixelUNet, TextUNet
from .schedules import PREDICTION_TYPES, setting, train_alphas_cumprod

FAMILY_COMPONENTS = {
    "pixel": ("unet", "scheduler"),
    "dit": ("transformer", "vae", "scheduler"),
    "sd": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
}
FAMILY_NAMES = {"pixel": "pixel-space diffusion", "dit": "DiT", "sd": "Stable Diffusion"}
#: diffusers' guidance_scale γ (= 1 + w) each family's pipeline defaults to
DEFAULT_GUIDANCE_SCALE = {"dit": 4.0, "sd": 7.5}
_GB = 1024**3
# Working memory beyond the weights, as a share of the weights' bytes: the activations of one batched CFG
# step and of the VAE decode at the default size grow with the network's width as its weights do
# (SD 1.5 at 512×512 in fp16: ~2 GB of weights; bench/diffusers_speed.py measures the peak).
_WORKING_SHARE = {"pixel": 0.5, "dit": 0.75, "sd": 0.75}
_MIN_WORKING_BYTES = 64 * 1024**2


def pipeline_family(index: Mapping[str, Any], name: str) -> str:
    """"pixel", "dit" or "sd" for a model_index.json; a ValueError naming what is not supported."""
    pipeline = index.get("_class_name", "pipeline")
    unet, transformer = files.component_class(index, "unet"), files.component_class(index, "transformer")
    if files.component_class(index, "text_encoder_2") or files.component_class(index, "tokenizer_2"):
        raise ValueError(f"{name}: {pipeline} has two text encoders (SDXL); this app opens Stable Diffusion "
                         "1.x/2.x, DiT and pixel-space pipelines.")
    if unet == "UNet2DModel":
        if files.component_class(index, "vqvae") or files.component_class(index, "vae"):
            raise ValueError(f"{name}: {pipeline} is a latent UNet2DModel pipeline, which is not supported.")
        return "pixel"
    if transformer in ("DiTTransformer2DModel", "Transformer2DModel"):
        return "dit"
    if unet == "UNet2DConditionModel":
        return "sd"
    raise ValueError(f"{name}: {pipeline} is not supported; this app opens Stable Diffusion 1.x/2.x, DiT and "
                     "pixel-space (UNet2DModel) pipelines.")


@dataclass(frozen=True)
class PipelineInfo:
    """What a pipeline folder holds, read without loading weights."""

    folder: Path
    pipeline: str  # the pipeline class, e.g. "StableDiffusionPipeline"
    family: str
    components: Mapping[str, str]  # component → class, for the ones this app loads
    weights: Mapping[str, files.Weights]  # component → its weight files (tokenizer/scheduler have none)

    @property
    def parameters(self) -> int:
        return sum(w.parameters for w in self.weights.values())

    def memory_bytes(self, precision: str) -> int:
        """About how much device memory sampling needs: the weights in `precision` plus working memory."""
        weights = self.parameters * (torch.finfo(PRECISIONS[precision]).bits // 8)
        return int(weights + max(_MIN_WORKING_BYTES, _WORKING_SHARE[self.family] * weights))

    def memory_text(self, precision: str) -> str:
        size = torch.finfo(PRECISIONS[precision]).bits // 8
        return (f"about {self.memory_bytes(precision) / _GB:.1f} GB ({_count(self.parameters)} parameters = "
                f"{self.parameters * size / _GB:.1f} GB in {precision}, plus working memory)")


def inspect_pipeline(folder: str | Path) -> PipelineInfo:
    """Read a pipeline folder's layout; ValueError (CheckpointError) naming a missing component."""
    folder = Path(folder)
    if not files.is_pipeline_folder(folder):
        raise CheckpointError(f"{folder}: not a diffusers pipeline folder (it has no model_index.json).")
    index = files.read_model_index(folder)
    family = pipeline_family(index, folder.name)
    components, weights = {}, {}
    for name in FAMILY_COMPONENTS[family]:
        cls = files.component_class(index, name)
        if cls is None:
            raise CheckpointError(f"{folder.name}: model_index.json names no {name!r} component, which a "
                                  f"{FAMILY_NAMES[family]} pipeline needs.")
        if not (folder / name).is_dir():
            raise CheckpointError(f"{folder.name}: the {name!r} component ({cls}) is missing: there is no "
                                  f"{name}/ folder.")
        components[name] = cls
        if name not in ("tokenizer", "scheduler"):
            weights[name] = files.component_weights(folder / name)
    return PipelineInfo(folder, str(index.get("_class_name", "pipeline")), family, components, weights)


def _load_component(info: PipelineInfo, name: str, dtype: torch.dtype) -> Any:
    """One component, offline, from its folder."""
    cls_name = info.components[name]
    library = require("transformers" if name in ("text_encoder", "tokenizer") else "diffusers")
    cls = getattr(library, cls_name, None)
    if cls is None:
        raise CheckpointError(f"{info.folder.name}/{name}: the installed {library.__name__} has no {cls_name}.")
    path = str(info.folder / name)
    with weights_only_loading() as refused:
        try:
            if name == "tokenizer":
                return cls.from_pretrained(path, local_files_only=True)
            weights = info.weights[name]
            kwargs = {"local_files_only": True, "use_safetensors": weights.safetensors}
            if library.__name__ == "transformers":
                return cls.from_pretrained(path, **kwargs).to(dtype).eval()
            return cls.from_pretrained(path, torch_dtype=dtype, variant=weights.variant, **kwargs).eval()
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
            if refused:
                raise CheckpointError(f"{info.folder.name}/{name}: refused. Its weights file holds Python objects "
                                      f"that would run code when opened (it asks for {refused[0]}), not just "
                                      "tensors.") from None
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{info.folder.name}/{name} ({cls_name}) could not be loaded: {detail}") from None


def _clip_mode(scheduler: Mapping[str, Any]) -> str:
    if scheduler.get("thresholding"):
        return "dynamic"
    if scheduler.get("clip_sample", True):  # the DDIM/DDPM schedulers' default
        if float(scheduler.get("clip_sample_range", 1.0)) != 1.0:
            raise ValueError(f"clip_sample_range {scheduler['clip_sample_range']} is not supported (only 1).")
        return "clip"
    return "none"


def _variance(scheduler: Mapping[str, Any], learn_sigma: bool) -> str:
    kind = str(scheduler.get("variance_type") or "fixed_small").removesuffix("_log")
    if kind == "learned_range" and not learn_sigma:
        return "fixed_small"
    return kind if kind in ("fixed_small", "fixed_large", "learned_range") else "fixed_small"


def _class_names(index: Mapping[str, Any], count: int) -> tuple[str, ...]:
    """From the pipeline's id2label (DiT folders carry it in model_index.json), else ImageNet's for 1000."""
    id2label = index.get("id2label")
    if isinstance(id2label, dict) and all(str(i) in id2label for i in range(count)):
        return tuple(str(id2label[str(i)]) for i in range(count))
    if count == 1000:
        from ..guided_diffusion.flags import imagenet_class_names

        return imagenet_class_names()
    return ()


def _side(sample_size: Any) -> tuple[int, int]:
    if isinstance(sample_size, (list, tuple)):
        return int(sample_size[0]), int(sample_size[1])
    return int(sample_size), int(sample_size)


def _count(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)


def schedule_text(scheduler: Mapping[str, Any]) -> str:
    """The schedule in words: β, steps, spacing, offset, what the network predicts."""
    t = setting(scheduler, "num_train_timesteps")
    if setting(scheduler, "trained_betas") is not None:
        betas = "trained β"
    else:
        betas = f"{setting(scheduler, 'beta_schedule')} β {setting(scheduler, 'beta_start')}–" \
                f"{setting(scheduler, 'beta_end')}"
    text = f"{betas} over {t} steps, {setting(scheduler, 'timestep_spacing')} spacing"
    if setting(scheduler, "steps_offset"):
        text += f", steps offset {setting(scheduler, 'steps_offset')}"
    return text + f", {setting(scheduler, 'prediction_type').replace('_', '-')}"


def build_bundle(name: str, info: PipelineInfo, parts: Mapping[str, Any], scheduler: dict[str, Any],
                 index: Mapping[str, Any], device: torch.device, precision: str, note: str = "") -> DiffusersBundle:
    """Wrap loaded components into a bundle on `device`; `parts` maps component names to objects, `note`
    ends the description."""
    prediction = setting(scheduler, "prediction_type")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{name}: prediction_type {prediction!r} is not supported ({', '.join(PREDICTION_TYPES)}).")
    to_eps = EpsFromPrediction(prediction, train_alphas_cumprod(scheduler))
    family = info.family
    network: dict[str, Any] = {"family": family, "pipeline": info.pipeline, "scheduler": scheduler,
                               "prediction_type": prediction}
    num_classes, null_label, learn_sigma = 0, False, False
    vae = parts.get("vae")
    if family == "pixel":
        denoiser = parts["unet"]
        c, out = denoiser.config.in_channels, denoiser.config.out_channels
        if denoiser.config.class_embed_type is not None:
            raise ValueError(f"{name}: class_embed_type {denoiser.config.class_embed_type!r} is not supported.")
        num_classes = int(denoiser.config.num_class_embeds or 0)
        model: nn.Module = PixelUNet(denoiser, to_eps)
        height, width = _side(denoiser.config.sample_size)
    elif family == "dit":
        denoiser = parts["transformer"]
        c, out = denoiser.config.in_channels, denoiser.config.out_channels or denoiser.config.in_channels
        num_classes, null_label = int(denoiser.config.num_embeds_ada_norm), True
        model = DiT(denoiser, to_eps)
        height, width = _side(denoiser.config.sample_size)
    else:
        denoiser = parts["unet"]
        c, out = denoiser.config.in_channels, denoiser.config.out_channels
        model = TextUNet(denoiser, to_eps)
        height, width = _side(denoiser.config.sample_size)
    learn_sigma = out == 2 * c
    if vae is not None:
        network.update(vae_scale_factor=files.vae_scale_factor(vae.config),
                       scaling_factor=float(vae.config.scaling_factor),
                       shift_factor=float(getattr(vae.config, "shift_factor", None) or 0.0))
    f = network.get("vae_scale_factor", 1)
    kind = "class-conditional" if num_classes else ("text-to-image" if family == "sd" else "unconditional")
    space = f"{width * f}×{height * f} images" + (f" via {c}×{height}×{width} latents" if vae is not None else "")
    description = (f"{FAMILY_NAMES[family]} {kind} pipeline ({info.pipeline}, {_count(info.parameters)} "
                   f"parameters) · {schedule_text(scheduler)} · {space} · {info.folder}")
    description += f" · {note}" if note else ""
    config = ModelConfig(
        architecture="diffusers", data_shape=(c, height, width), network=network, schedule="diffusers",
        num_timesteps=int(setting(scheduler, "num_train_timesteps")), num_classes=num_classes,
        class_names=_class_names(index, num_classes) if num_classes else (), null_label=null_label,
        learn_sigma=learn_sigma, variance=_variance(scheduler, learn_sigma), clip=_clip_mode(scheduler),
        description=description, default_guidance_scale=DEFAULT_GUIDANCE_SCALE.get(family),
    )
    bundle = DiffusersBundle(name, config, model.eval(), device=device, precision=precision, vae=vae,
                             text_encoder=parts.get("text_encoder"), tokenizer=parts.get("tokenizer"))
    return bundle.to(device)


def check_memory(info: PipelineInfo, device: torch.device, precision: str) -> None:
    """Refuse, with a message, a model that cannot fit on `device` in `precision`."""
    free = free_memory(device)
    needed = info.memory_bytes(precision)
    if free is not None and needed > free:
        hint = " Try fp16." if precision == "fp32" and device.type in ("cuda", "mps") else ""
        raise ValueError(f"{info.folder.name} needs {info.memory_text(precision)}, but only {free / _GB:.1f} GB "
                         f"is free on {device.type.upper()}.{hint}")


def load_pipeline(folder: str | Path, device: str | torch.device = "auto", precision: str = "fp32") -> DiffusersBundle:
    """Open a diffusers pipeline folder on `device` ("auto": CUDA > MPS > CPU) in `precision`.

    Raises ValueError (CheckpointError) with a readable sentence: a missing component or library, an
    unsupported pipeline, weights that would run code, or a model too large for the device.
    """
    folder = Path(folder)
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    DiffusersBundle.check_precision(precision, target)
    info = inspect_pipeline(folder)
    check_memory(info, target, precision)
    require("diffusers")
    dtype = PRECISIONS[precision]
    parts = {name: _load_component(info, name, dtype) for name in info.components if name != "scheduler"}
    scheduler = files.read_json(folder / "scheduler" / "scheduler_config.json")
    return build_bundle(folder.name, info, parts, scheduler, files.read_model_index(folder), target, precision)
