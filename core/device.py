"""Where sampling runs: auto (CUDA > MPS > CPU) or an explicit device."""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """The device kinds present on this machine, best first."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """A torch.device for `name`; a clear ValueError when that device is absent."""
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    present = available_devices()
    if kind == "auto":
        return torch.device(present[0])
    if kind not in present:
        raise ValueError(f"No {kind.upper()} device is available here; available: {', '.join(present)}.")
    return torch.device(name)
