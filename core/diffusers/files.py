"""What is on disk, read without diffusers and without loading weights: the pipeline folder's
`model_index.json`, each component's weight files and their parameter counts (from safetensors headers)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import CheckpointError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def is_pipeline_folder(path: str | Path) -> bool:
    """A folder in diffusers' `save_pretrained` layout (it has a model_index.json)."""
    return (Path(path) / "model_index.json").is_file()


def read_model_index(folder: Path) -> dict[str, Any]:
    """The pipeline's model_index.json; CheckpointError when it is unreadable."""
    path = folder / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder.name}: model_index.json is unreadable ({exc}).") from None
    if not isinstance(index, dict):
        raise CheckpointError(f"{folder.name}: model_index.json is not a JSON object.")
    return index


def component_class(index: dict[str, Any], name: str) -> str | None:
    """The class model_index.json names for component `name` (e.g. "UNet2DModel"), or None."""
    entry = index.get(name)
    if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str):
        return entry[1]
    return None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent.parent.name}: {path.parent.name}/{path.name} is missing.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.parent.name}/{path.name} is unreadable ({exc}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.parent.name}/{path.name} is not a JSON object.")
    return data


def vae_scale_factor(vae_config: Any) -> int:
    """Pixels per latent along a side: 2^(levels − 1), as the pipelines compute it (a config dict or object)."""
    channels = vae_config["block_out_channels"] if isinstance(vae_config, dict) else vae_config.block_out_channels
    return 2 ** (len(channels) - 1)


@dataclass(frozen=True)
class Weights:
    """The weight files from_pretrained will read for one component, and what they hold."""

    files: tuple[Path, ...]
    variant: str | None  # "fp16" when only the fp16 variant files are there
    parameters: int  # exact for .safetensors; from the file size for pickled files (as fp32, or fp16 variant)

    @property
    def safetensors(self) -> bool:
        return all(f.suffix == ".safetensors" for f in self.files)


def _variant(path: Path) -> str | None:
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 and parts[-2] in ("fp16", "bf16", "fp32") else None


def safetensors_parameters(path: Path) -> int:
    """Parameter count from a .safetensors header (8-byte length, then JSON), without reading tensors."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise CheckpointError(f"{path.name}: not a readable .safetensors file ({exc}).") from None
    total = 0
    for key, info in header.items():
        if key != "__metadata__":
            count = 1
            for d in info.get("shape", []):
                count *= int(d)
            total += count
    return total


def component_weights(folder: Path) -> Weights:
    """The weights in a component folder: safetensors before pickles, the plain files before a variant."""
    found = [p for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES] if folder.is_dir() else []
    if not found:
        raise CheckpointError(f"{folder.parent.name}: the {folder.name!r} folder has no weight files "
                              f"({', '.join(WEIGHT_SUFFIXES)}).")
    for variant in (None, "fp16", "bf16", "fp32"):
        for suffix in (".safetensors", ".bin"):
            chosen = tuple(p for p in found if p.suffix == suffix and _variant(p) == variant)
            if chosen:
                if suffix == ".safetensors":
                    params = sum(safetensors_parameters(p) for p in chosen)
                else:
                    params = sum(p.stat().st_size for p in chosen) // (2 if variant in ("fp16", "bf16") else 4)
                return Weights(chosen, variant, params)
    raise CheckpointError(f"{folder.parent.name}/{folder.name}: no .safetensors or .bin weights.")
