"""Network passes replayed as CUDA graphs: a run calls the same network with the same shapes at every step,
so on CUDA its kernels are recorded once and replayed, without the CPU launching each of them again.

Only our own networks are recorded (a module class that sets `cuda_graph_safe = True`: their forwards read
no tensor value on the host, so nothing of one step's inputs is baked into the recording), only on CUDA,
and for at most `PER_MODULE` input shapes per module (each recording holds its own memory). The inputs
are copied into fixed buffers, the recording is replayed, and copies of its outputs are returned.

A recording is trusted once it has reproduced an ordinary call: the first call with new shapes runs the
function ordinarily (warm-up, cuDNN's choices: its result is returned) and records it; the second compares
its replay with an ordinary call on its own inputs. Any failure to record or a disagreement puts those shapes back
on ordinary calls for the module's life, said in one log line; the caller always gets the right result.
"""
from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

PER_MODULE = 4  # recordings kept per module (the least recently used goes first)
WARMUP = 2  # ordinary calls on a side stream before recording (lazy initialisation, cuDNN's benchmark)
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}  # relative, replay vs ordinary

Function = Callable[..., Sequence[Tensor]]


def graph_safe(module: nn.Module | None) -> bool:
    """Whether `module` declares its forward fit for recording (no host reads of tensor values)."""
    return module is not None and bool(getattr(type(module), "cuda_graph_safe", False))


@dataclass
class _Recording:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    verified: bool = False

    def replay(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        for buffer, value in zip(self.inputs, inputs):
            buffer.copy_(value)
        self.graph.replay()
        return tuple(out.clone() for out in self.outputs)


def _record(fn: Function, inputs: Sequence[Tensor]) -> tuple[_Recording, tuple[Tensor, ...]]:
    """The recording of fn on buffers holding `inputs`, and fn(*inputs) from an ordinary (warm-up) call."""
    buffers = tuple(x.clone() for x in inputs)
    side = torch.cuda.Stream(device=buffers[0].device)
    side.wait_stream(torch.cuda.current_stream(buffers[0].device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            ordinary = tuple(fn(*buffers))
    torch.cuda.current_stream(buffers[0].device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = tuple(fn(*buffers))
    return _Recording(graph, buffers, outputs), ordinary


def _agree(replayed: Sequence[Tensor], ordinary: Sequence[Tensor]) -> bool:
    for a, b in zip(replayed, ordinary, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        scale = b.float().abs().max().item() + 1e-6
        if (a.float() - b.float()).abs().max().item() > TOLERANCE.get(b.dtype, 1e-4) * scale:
            return False
    return True


def _recordable(module: nn.Module, inputs: Sequence[Tensor]) -> bool:
    return bool(inputs) and inputs[0].is_cuda and graph_safe(module)


class Graphs:
    """Recordings of functions of tensors, per module and key (what fixes the shapes: see `call`)."""

    def __init__(self) -> None:
        self._recorded: weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple, _Recording | None]] = (
            weakref.WeakKeyDictionary())

    def call(self, module: nn.Module, key: tuple, fn: Function, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """fn(*inputs), replayed from a recording where possible. `key` must tell apart everything besides the
        inputs' shapes and dtypes that changes what fn launches (e.g. autocast's dtype); fn must return a
        sequence of tensors and read nothing from the host that changes between calls."""
        if not _recordable(module, inputs):
            return tuple(fn(*inputs))
        key = (*key, *((tuple(x.shape), x.dtype, x.device) for x in inputs))
        known = self._recorded.setdefault(module, OrderedDict())
        if key not in known:
            try:
                known[key], out = _record(fn, inputs)
            except Exception as exc:  # noqa: BLE001 — any failure: ordinary calls, said once
                self._give_up(module, key, f"could not be recorded ({type(exc).__name__}: {exc})")
                return tuple(fn(*inputs))
            while len(known) > PER_MODULE:
                known.popitem(last=False)
            return out
        known.move_to_end(key)
        recording = known[key]
        if recording is None:
            return tuple(fn(*inputs))
        out = recording.replay(inputs)
        if not recording.verified:
            ordinary = tuple(fn(*inputs))
            if not _agree(out, ordinary):
                self._give_up(module, key, "did not reproduce an ordinary call")
                return ordinary
            recording.verified = True
        return out

    def _give_up(self, module: nn.Module, key: tuple, why: str) -> None:
        self._recorded.setdefault(module, OrderedDict())[key] = None
        log.warning("CUDA graph of %s %s; it runs without one.", type(module).__name__, why)

    def state(self, module: nn.Module) -> dict[tuple, str]:
        """key → "recorded", "verified" or "ordinary" (recording failed or disagreed), for tests and benches."""
        return {key: "ordinary" if rec is None else "verified" if rec.verified else "recorded"
                for key, rec in self._recorded.get(module, {}).items()}


GRAPHS = Graphs()
