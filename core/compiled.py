"""Our networks' forwards compiled ahead of time for the CPU (torch.export + AOTInductor), once per network,
and kept on disk.

A small network's forward on the CPU is a few hundred small operations, and eager PyTorch runs each as a
kernel of its own with its own pass over memory: on mnist-cfg the normalisations, activations, additions
and concatenations between the convolutions take about 40 % of a forward. AOTInductor fuses them into
generated C++ loops, built into one shared library that also holds the weights. On this project's 2-core
CPU a forward of 32 digits went from 12.9 to 8.2 ms (2 threads), and 16 digits with CFG over 50 DDIM
steps from 0.63 to 0.43 s (`bench/mnist.py`).

Compiling takes half a minute or more and needs a C++ compiler, so it never happens on the way to a
result: `python -m core compile --model NAME` builds the library (the app runs that command in a
low-priority background process after it has loaded a model: desktop_app/compiling.py), and `attach` only
uses a library that is already there. A library is named by a digest of everything that decides its code
and constants (the weights, the config, the torch version, the CPU's instruction set) and used only after
it has reproduced the eager forward on a test batch; one that cannot be loaded or disagrees is ignored,
said in one log line. A network that failed to compile leaves a `.failed` note with the reason where its
library would be, so that it is not tried again with the same torch.

Only fp32 CPU bundles of networks that declare `compilable = True` (a forward torch.export can trace: no
data-dependent control flow) qualify; the batch size is a dynamic dimension, so one library serves every
batch. The compiled forward has no autograd: a call that needs gradients runs eagerly.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
import tempfile
import time
import warnings
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .fileio import atomic_write

log = logging.getLogger(__name__)

FORMAT = 2  # bump when what a library holds or how it is called changes
CACHE_ENV = "GUIDANCE_STUDIO_CACHE"  # a folder for the libraries instead of the user's cache folder
MAX_BATCH = 1 << 16
TOLERANCE = 1e-4  # relative to the eager output's largest magnitude


class CompileError(ValueError):
    """A network could not be compiled here, or its library does not reproduce it (one readable line)."""


def cache_dir() -> Path:
    """Where compiled libraries are kept: $GUIDANCE_STUDIO_CACHE/compiled, or the user's cache folder's."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "compiled"
    import platformdirs

    return Path(platformdirs.user_cache_dir("guidance-studio")) / "compiled"


def compilable(bundle: Any) -> bool:
    """Whether `bundle`'s network can be compiled by this module: fp32 on the CPU, a network that says so."""
    return (bundle.device.type == "cpu" and bundle.precision == "fp32"
            and bool(getattr(type(bundle.model), "compilable", False)))


_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network → (tensor versions, digest)


def _digest(bundle: Any) -> str:
    """A digest of what decides the compiled code and constants; kept per network while no tensor of it has
    changed (hashing a large checkpoint's weights takes about a second)."""
    state = bundle.model.state_dict()
    config = bundle.config.to_json()
    versions = (config, tuple(t._version for t in state.values()))
    known = _DIGESTS.get(bundle.model)
    if known is not None and known[0] == versions:
        return known[1]
    h = hashlib.sha256()
    for part in (FORMAT, torch.__version__, torch.backends.cpu.get_cpu_capability(),
                 type(bundle.model).__qualname__, config):
        h.update(str(part).encode() + b"\0")
    for name, tensor in state.items():
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    _DIGESTS[bundle.model] = (versions, h.hexdigest()[:20])
    return _DIGESTS[bundle.model][1]


def library_path(bundle: Any) -> Path:
    """The compiled network of `bundle` (a shared library; present or not)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", bundle.name)[:60] or "model"
    return cache_dir() / f"{slug}-{_digest(bundle)}.so"


def failure_note(path: Path) -> Path:
    return path.with_suffix(".failed")


def checksum_path(path: Path) -> Path:
    """The library's SHA-256, written when it was built: a damaged or truncated library is refused before it
    is loaded (loading one can kill the process with a bus error, which no exception handler sees)."""
    return path.with_suffix(".sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def example_inputs(bundle: Any, batch: int) -> tuple[Tensor, ...]:
    """(x, t) or (x, t, y) as the samplers pass them: float32 samples, int64 timesteps, int64 labels
    (the null label included where the model has one)."""
    g = torch.Generator().manual_seed(batch)
    cfg = bundle.config
    x = torch.randn((batch, *cfg.data_shape), generator=g)
    t = torch.linspace(0, cfg.num_timesteps - 1, batch).round().long()
    if not cfg.num_classes:
        return x, t
    return x, t, torch.arange(batch) % (cfg.num_classes + int(cfg.null_label))


def compile_network(bundle: Any) -> Path:
    """Compile `bundle`'s forward into its library (replacing one that is there) and return its path.
    CompileError, with the reason in one line, when it cannot be compiled (no C++ compiler, an operation
    AOTInductor lacks); the reason is also left in the failure note."""
    if not compilable(bundle):
        raise CompileError(f"{bundle.name} cannot be compiled: only the UNet families' networks, in fp32 on the CPU.")
    path = library_path(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(bundle, 2)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    names = ("x", "t", "y")[:len(inputs)]
    try:
        # about a second to import: only here, never on the way to a window
        from torch._inductor import aoti_compile_and_package

        with tempfile.TemporaryDirectory(dir=path.parent) as work:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations inside export
                program = torch.export.export(bundle.model.eval(), inputs,
                                              dynamic_shapes={name: {0: batch} for name in names})
                package = aoti_compile_and_package(program, package_path=os.path.join(work, "network.pt2"))
            with zipfile.ZipFile(package) as archive:  # the library holds the kernels and the weights
                (member,) = [name for name in archive.namelist() if name.endswith(".so")]
                library = archive.extract(member, work)
            os.chmod(library, 0o755)
            atomic_write(checksum_path(path), lambda fh: fh.write(_sha256(Path(library)).encode() + b"\n"))
            os.replace(library, path)  # whole or not at all: another process may be looking for it
    except Exception as exc:  # any compiler failure: said, noted, and the network runs eagerly
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        atomic_write(failure_note(path), lambda fh: fh.write(reason.encode() + b"\n"))
        raise CompileError(f"Could not compile {bundle.name}: {reason}") from exc
    failure_note(path).unlink(missing_ok=True)
    return path


class _Library:
    """A compiled network's shared library, called through AOTInductor's C interface with ctypes.

    Not through torch's Python binding of the same library (`torch._inductor.aoti_load_package`): that one
    holds the interpreter lock for the whole forward (14 ms for mnist-cfg's 32 digits on one thread), and
    the app's GUI thread cannot paint meanwhile; a ctypes call lets it go. Tensors cross as AOTInductor's
    tensor handles (torch._C._aoti makes and takes them): the library takes the input handles and hands
    over the output handles.
    """

    def __init__(self, path: Path):
        self._lib = lib = ctypes.CDLL(str(path))
        self._container = ctypes.c_void_p()
        _check(lib.AOTInductorModelContainerCreateWithDevice(ctypes.byref(self._container), ctypes.c_size_t(1),
                                                               b"cpu", None), "create")
        count = ctypes.c_size_t()
        _check(lib.AOTInductorModelContainerGetNumOutputs(self._container, ctypes.byref(count)), "count outputs")
        self._outputs = count.value
        lib.AOTInductorModelContainerRun.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        weakref.finalize(self, lib.AOTInductorModelContainerDelete, self._container)

    def __call__(self, *inputs: Tensor) -> Tensor:
        handles = [_capsule_pointer(c, None) for c in torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(inputs)]
        outputs = (ctypes.c_void_p * self._outputs)()
        _check(self._lib.AOTInductorModelContainerRun(self._container, (ctypes.c_void_p * len(handles))(*handles),
                                                      len(handles), outputs, self._outputs, None, None), "run")
        (out,) = torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(
            [_new_capsule(handle, None, None) for handle in outputs])
        return out


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype, _new_capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"the compiled network failed to {what} (status {status})")


@dataclass
class Compiled:
    """A loaded compiled network: called as the network is, for inputs like those it was compiled for."""

    runner: Any
    path: Path
    conditional: bool
    sample_dims: int

    def accepts(self, x: Tensor, t: Tensor, y: Any) -> bool:
        if (y is not None) != self.conditional or (y is not None and not isinstance(y, Tensor)):
            return False
        if torch.is_grad_enabled() and x.requires_grad:
            return False
        return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == self.sample_dims
                and t.dtype == torch.long and (y is None or y.dtype == torch.long) and 1 <= len(x) <= MAX_BATCH)

    def __call__(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        inputs = (x, t) if y is None else (x, t, y)
        return self.runner(*(v.contiguous() for v in inputs))


def attach(bundle: Any) -> bool:
    """Give `bundle` its compiled forward (`bundle.compiled`) if its library is on disk and reproduces the
    eager forward; False (and nothing changed) otherwise."""
    if not compilable(bundle):
        return False
    path = library_path(bundle)
    if not path.is_file():
        return False
    try:
        expected_sum = checksum_path(path).read_text().strip() if checksum_path(path).is_file() else "none"
        if _sha256(path) != expected_sum:
            raise ValueError("its checksum does not match the one written when it was built")
        runner = _Library(path)
        inputs = example_inputs(bundle, 3)  # another batch size than the network was traced with
        with torch.inference_mode():
            expected, got = bundle.model(*inputs), runner(*inputs)
        error = (got - expected).abs().max().item() / (expected.abs().max().item() + 1e-6)
        if got.shape != expected.shape or not error <= TOLERANCE:
            raise ValueError(f"it differs from the network by {error:.1e}")
    except Exception as exc:  # noqa: BLE001 — a damaged, foreign or stale library: run eagerly
        log.warning("The compiled network %s is not used (%s: %s); %s runs eagerly.",
                    path.name, type(exc).__name__, exc, bundle.name)
        return False
    bundle.compiled = Compiled(runner, path, conditional=len(inputs) == 3, sample_dims=inputs[0].dim())
    return True


def wanted(bundle: Any) -> bool:
    """Whether compiling `bundle`'s network is worth starting: it qualifies, has no library yet, and has
    not failed to compile with this torch."""
    if not compilable(bundle) or bundle.compiled is not None:
        return False
    path = library_path(bundle)
    return not path.is_file() and not failure_note(path).is_file()


def timed_forward(fn: Any, inputs: tuple[Tensor, ...], repeats: int = 20) -> float:
    """Median seconds of fn(*inputs) under inference mode, after two warm-up calls."""
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            start = time.perf_counter()
            fn(*inputs)
            if i >= 2:
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
