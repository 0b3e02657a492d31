"""Where sampling runs: auto (CUDA > MPS > CPU) or an explicit device."""
from __future__ import annotations

import os
import time
from collections.abc import Callable

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


def free_memory(device: torch.device) -> int | None:
    """Bytes a new model can still use on `device`, or None where that cannot be told.

    CUDA: the driver's free memory; MPS: Metal's recommended working set minus what torch holds;
    CPU: the kernel's MemAvailable (Linux) or the free physical pages.
    """
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def synchronize(device: torch.device) -> None:
    """Wait until `device` has finished the work queued so far (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Stopwatch:
    """Times work queued on `device` without waiting for it: `start()` and `stop()` around the queueing, then
    `seconds()` once the work is wanted (on CUDA, events on the current stream: only `seconds()` waits, for
    the work itself; elsewhere `clock` at start and at stop, the device waited for at stop)."""

    def __init__(self, device: torch.device, clock: Callable[[], float] = time.perf_counter):
        self.device = device
        self.clock = clock
        self._events = device.type == "cuda"
        self._marks: list = []

    def _mark(self) -> None:
        if self._events:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append(event)
        else:
            synchronize(self.device)
            self._marks.append(self.clock())

    def start(self) -> None:
        self._marks.clear()
        self._mark()

    def stop(self) -> None:
        self._mark()

    def seconds(self) -> float:
        """The seconds between start and stop (waits on CUDA until the work queued between them is done)."""
        begin, end = self._marks
        if self._events:
            end.synchronize()
            return begin.elapsed_time(end) / 1000.0
        return end - begin
