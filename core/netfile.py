"""Single networks that are not samplable models — the evaluation judge, a standalone noise-aware
classifier — stored as `.safetensors` with their architecture and class names in the metadata
(no pickle). They live in sub-folders of resources/models/ so the model list never offers them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from .checkpoints import CheckpointError, checked_network, load_state_checked, read_header, read_tensors
from .fileio import atomic_save

NET_FORMAT = "guidance-studio-network/1"


@dataclass(frozen=True)
class NetworkInfo:
    """What a network file says about its network: `role` is "judge" or "classifier"."""

    name: str
    role: str
    architecture: str
    network: dict[str, Any]
    class_names: tuple[str, ...]
    notes: str = ""


def save_network(module: nn.Module, info: NetworkInfo, path: str | Path) -> Path:
    """Write the module's state dict and `info` atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": NET_FORMAT, "name": info.name, "role": info.role, "architecture": info.architecture,
            "network": json.dumps(info.network, sort_keys=True), "class_names": json.dumps(list(info.class_names)),
            "notes": info.notes}
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_network(path: str | Path, role: str | None = None) -> tuple[nn.Module, NetworkInfo]:
    """(module in eval mode on the CPU, its info); a CheckpointError says what is wrong with a bad file."""
    path = Path(path)
    header = read_header(path)
    meta = header.metadata
    if meta.get("format") != NET_FORMAT:
        raise CheckpointError(f"{path}: not a Guidance Studio network file (no '{NET_FORMAT}' metadata).")
    try:
        info = NetworkInfo(meta["name"], meta["role"], meta["architecture"], json.loads(meta["network"]),
                           tuple(json.loads(meta["class_names"])), meta.get("notes", ""))
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: its description is unreadable ({exc}).") from None
    if role is not None and info.role != role:
        raise CheckpointError(f"{path}: holds a {info.role}, not a {role}.")
    module = checked_network(info.architecture, info.network, header.tensors, path.name)
    load_state_checked(module, read_tensors(path, header), path.name)
    return module.eval(), info
