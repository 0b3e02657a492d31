"""Single-file Stable Diffusion 1.x/2.x checkpoints (`.safetensors`, or `.ckpt` read weights-only), offline.

Such a file holds the UNet, VAE and text encoder in the original (LDM) layout, but none of the configs
diffusers needs to rebuild them: diffusers fetches those from the hub. We ship them instead, a few kB of
JSON per family under resources/diffusers/ (sd-v1, sd-v2 for 768-pixel v-prediction, sd-v2-base for
512-pixel ε-prediction), and let diffusers map the weights onto that layout.

The one thing a checkpoint needs that we cannot ship is the CLIP tokenizer's vocabulary (vocab.json and
merges.txt, or tokenizer.json: ~1.6 MB of third-party data): it is taken from a `tokenizer/` folder beside
the checkpoint (or those files beside it), else from a CLIP tokenizer already in the local Hugging Face cache, and
otherwise the error says where to put it. SD 1.x and 2.x share that vocabulary; the families differ only
in the padding token, which the shipped tokenizer_config.json sets.

Which 2.x model a file is cannot be read from its weights: a `NAME.yaml` beside it (the convention of other
tools) saying `parameterization: "v"` means v-prediction, without that ε; with no yaml we assume the
768-pixel v-prediction model, as diffusers does, and the description says so.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from resources import RESOURCES

from ..bundle import PRECISIONS
from ..checkpoints import CheckpointError
from ..device import resolve_device
from . import files
from .bundle import DiffusersBundle
from .deps import require, weights_only_loading
from .loader import FAMILY_COMPONENTS, PipelineInfo, build_bundle, check_memory

CONFIGS = Path(RESOURCES) / "diffusers"
_UNET = "model.diffusion_model."
_PREFIXES = (_UNET, "first_stage_model.", "cond_stage_model.")  # what is loaded (not EMA copies, not the rest)
# The cross-attention width of the first attention block: 768 in SD 1.x (CLIP-L), 1024 in 2.x (OpenCLIP-H).
_CONTEXT_KEY = _UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
CLIP_VOCAB_SIZE = 49408
_TOKENIZER_SETTINGS = ("model_max_length", "bos_token", "eos_token", "unk_token", "pad_token")


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes by key, without reading the tensors (safetensors header; a .ckpt memory-mapped)."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path.name}: not a readable .safetensors file ({exc}).") from None
    from ..guided_diffusion.files import read_state_dict  # weights-only unpickling, readable errors

    try:  # memory-mapped: the shapes without reading gigabytes (zip-format checkpoints)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else None
    except Exception:  # legacy formats and damaged files: the reader below says what is wrong
        state = None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        state = read_state_dict(path)
    return {k: tuple(v.shape) for k, v in state.items()}


def is_single_file_checkpoint(path: str | Path) -> bool:
    """A Stable Diffusion checkpoint in one file: its UNet is stored under `model.diffusion_model.`.

    Only `.safetensors` headers are looked at here (cheap); a `.ckpt` is taken on its suffix."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return True
    if path.suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            return any(k.startswith(_UNET) for k in handle.keys())
    except (SafetensorError, OSError):
        return False


def _sidecar_parameterization(path: Path) -> str | None:
    """'v' or 'eps' from a NAME.yaml beside the checkpoint, None without one."""
    yaml = path.with_suffix(".yaml")
    if not yaml.is_file():
        return None
    text = yaml.read_text(encoding="utf-8", errors="replace")
    return "v" if re.search(r"parameterization:\s*[\"']?v[\"']?\s*$", text, re.MULTILINE) else "eps"


def checkpoint_family(path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[str, str]:
    """(config folder name under resources/diffusers, how that was decided) for a checkpoint's tensors."""
    if any(k.startswith("conditioner.embedders.") for k in shapes):
        raise ValueError(f"{path.name} is an SDXL checkpoint; this app opens Stable Diffusion 1.x/2.x single files.")
    if _CONTEXT_KEY not in shapes:
        raise CheckpointError(f"{path.name}: not a Stable Diffusion 1.x/2.x checkpoint (no {_CONTEXT_KEY}).")
    if shapes.get(_UNET + "input_blocks.0.0.weight", (0, 4))[1] != 4:
        raise ValueError(f"{path.name} is an inpainting or other special-purpose checkpoint (its UNet does not take "
                         "4 latent channels); this app opens text-to-image checkpoints.")
    width = shapes[_CONTEXT_KEY][-1]
    if width == 768:
        return "sd-v1", "SD 1.x (768-wide text conditioning)"
    if width != 1024:
        raise CheckpointError(f"{path.name}: text conditioning {width} wide is neither SD 1.x (768) nor 2.x (1024).")
    parameterization = _sidecar_parameterization(path)
    if parameterization == "v":
        return "sd-v2", f"SD 2.x, v-prediction ({path.with_suffix('.yaml').name})"
    if parameterization == "eps":
        return "sd-v2-base", f"SD 2.x, ε-prediction ({path.with_suffix('.yaml').name})"
    return "sd-v2", (f"SD 2.x, assumed the 768-pixel v-prediction model; for an ε model (512-base) put a "
                     f"{path.with_suffix('.yaml').name} saying parameterization: \"eps\" beside it")


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def _has_tokenizer(folder: Path) -> bool:
    """vocab.json and merges.txt (the slow tokenizer's files), or tokenizer.json (what transformers 5 saves)."""
    return ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()) or \
        (folder / "tokenizer.json").is_file()


def _is_clip_vocab(folder: Path) -> bool:
    try:
        if (folder / "vocab.json").is_file():
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        else:
            vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _has_tokenizer(folder) and len(vocab) == CLIP_VOCAB_SIZE and "<|endoftext|>" in vocab


def find_tokenizer(checkpoint: Path) -> Path:
    """The folder with the CLIP vocabulary for `checkpoint` (module docstring); CheckpointError if none."""
    for folder in (checkpoint.parent / "tokenizer", checkpoint.parent):
        if _has_tokenizer(folder):
            return folder
    cache = _hub_cache()
    for pattern in ("models--*/snapshots/*", "models--*/snapshots/*/tokenizer"):
        for folder in sorted(cache.glob(pattern)):
            if _is_clip_vocab(folder):
                return folder
    raise CheckpointError(
        f"{checkpoint.name} is a single-file Stable Diffusion checkpoint, which carries no tokenizer. Put the CLIP "
        f"tokenizer's files (vocab.json and merges.txt, or tokenizer.json: the tokenizer folder of any Stable "
        f"Diffusion pipeline) in a folder named tokenizer beside it ({checkpoint.parent / 'tokenizer'}), or open a "
        "diffusers pipeline folder.")


def inspect_single_file(path: str | Path, config: str | Path | None = None) -> tuple[PipelineInfo, Path, str]:
    """(what the checkpoint holds, the config folder used, how the family was decided), without loading.

    `config`: a diffusers-layout folder with the configs to use instead of the shipped ones (for models of
    another shape)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No such checkpoint file: {path}.")
    shapes = _shapes(path)
    if config is None:
        name, decided = checkpoint_family(path, shapes)
        folder = CONFIGS / name
    else:
        folder, decided = Path(config), f"the configs in {config}"
    parameters = 0
    for key, shape in shapes.items():
        if key.startswith(_PREFIXES):
            count = 1
            for d in shape:
                count *= int(d)
            parameters += count
    weights = {"checkpoint": files.Weights((path,), None, parameters)}
    components = {name: files.component_class(files.read_model_index(folder), name) or "?"
                  for name in FAMILY_COMPONENTS["sd"]}
    return PipelineInfo(path, "StableDiffusionPipeline", "sd", components, weights), folder, decided


def load_single_file(path: str | Path, device: str | torch.device = "auto", precision: str = "fp32",
                     config: str | Path | None = None) -> DiffusersBundle:
    """Open a single-file Stable Diffusion 1.x/2.x checkpoint on `device` in `precision`, offline."""
    path = Path(path)
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    DiffusersBundle.check_precision(precision, target)
    info, folder, decided = inspect_single_file(path, config)
    check_memory(info, target, precision)
    tokenizer_folder = find_tokenizer(path)
    diffusers, transformers = require("diffusers"), require("transformers")
    settings = files.read_json(folder / "tokenizer" / "tokenizer_config.json")
    try:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(
            str(tokenizer_folder), local_files_only=True,
            **{k: v for k, v in settings.items() if k in _TOKENIZER_SETTINGS})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"The tokenizer in {tokenizer_folder} could not be read ({exc}).") from None
    with weights_only_loading() as refused:
        try:
            pipe = diffusers.StableDiffusionPipeline.from_single_file(
                str(path), config=str(folder), local_files_only=True, torch_dtype=PRECISIONS[precision],
                tokenizer=tokenizer, safety_checker=None, feature_extractor=None)
        except Exception as exc:  # diffusers raises many kinds here; each becomes one readable sentence
            if refused:
                raise CheckpointError(f"{path.name}: refused. The file holds Python objects that would run code "
                                      f"when opened (it asks for {refused[0]}), not just weights.") from None
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{path.name} could not be read as {decided}: {detail}") from None
    parts: dict[str, Any] = {"unet": pipe.unet.eval(), "vae": pipe.vae.eval(),
                             "text_encoder": pipe.text_encoder.eval(), "tokenizer": tokenizer}
    scheduler = files.read_json(folder / "scheduler" / "scheduler_config.json")
    return build_bundle(path.stem, info, parts, scheduler, {}, target, precision,
                        note=f"{decided}; tokenizer from {tokenizer_folder}")
