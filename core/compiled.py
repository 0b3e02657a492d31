"""Our networks' forwards compiled ahead of time for the CPU (torch.export + AOTInductor), made once per
network and kept on disk.

A small network's forward on the CPU is a few hundred small operations, and eager PyTorch runs each as a
kernel of its own with its own pass over memory: on mnist-cfg the normalisations, activations, additions
and concatenations between the convolutions take about 40 % of a forward. AOTInductor fuses them into
generated C++ loops; the package it writes is a shared library plus the weights, loaded in milliseconds.
On this project's 2-core CPU a forward of 32 digits went from 12.9 ms to 8.2 ms (2 threads), and 16
digits with CFG over 50 DDIM steps from 0.76 s to about 0.45 s (`bench/mnist.py`).

Compiling takes half a minute or more and needs a C++ compiler, so it never happens on the way to a
result: `python -m core compile --model NAME` makes the package (the app runs that command in a
low-priority background process after it has loaded a model: `desktop_app/compiling.py`), and `attach`
only uses a package that is already there. A package is named by a digest of everything that decides
its code and constants (the weights, the config, the torch version, the CPU's instruction set); it is
used only after it reproduced the eager forward on a test batch, and a package that cannot be loaded or
disagrees is ignored, said in one log line. A network that failed to compile leaves a `.failed` note with
the reason beside where its package would be, so that it is not tried again with the same torch.

Only fp32 CPU bundles of networks that declare `compilable = True` (a forward torch.export can trace:
no data-dependent control flow) qualify; the batch size is a dynamic dimension, so one package serves
every batch. The compiled forward has no autograd: a call that needs gradients runs eagerly.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .fileio import atomic_write

log = logging.getLogger(__name__)

FORMAT = 1  # bump when what a package holds or how it is called changes
CACHE_ENV = "GUIDANCE_STUDIO_CACHE"  # a folder for the packages instead of the user's cache folder
MAX_BATCH = 1 << 16
TOLERANCE = 1e-4  # relative to the eager output's largest magnitude


class CompileError(ValueError):
    """A network could not be compiled here, or its package does not reproduce it (one readable line)."""


def cache_dir() -> Path:
    """Where packages are kept: $GUIDANCE_STUDIO_CACHE/compiled, or the user's cache folder's."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "compiled"
    import platformdirs

    return Path(platformdirs.user_cache_dir("guidance-studio")) / "compiled"


def compilable(bundle: Any) -> bool:
    """Whether `bundle`'s network can be compiled by this module: fp32 on the CPU, a network that says so."""
    return (bundle.device.type == "cpu" and bundle.precision == "fp32"
            and bool(getattr(type(bundle.model), "compilable", False)))


def _digest(bundle: Any) -> str:
    h = hashlib.sha256()
    for part in (FORMAT, torch.__version__, torch.backends.cpu.get_cpu_capability(),
                 type(bundle.model).__qualname__, bundle.config.to_json()):
        h.update(str(part).encode() + b"\0")
    for name, tensor in bundle.model.state_dict().items():
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def package_path(bundle: Any) -> Path:
    """The package `bundle`'s network compiles to (present or not)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", bundle.name)[:60] or "model"
    return cache_dir() / f"{slug}-{_digest(bundle)}.pt2"


def failure_note(path: Path) -> Path:
    return path.with_suffix(".failed")


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


def compile_package(bundle: Any) -> Path:
    """Compile `bundle`'s forward into its package (replacing one that is there) and return its path.
    CompileError, with the reason in one line, when it cannot be compiled (no C++ compiler, an operation
    AOTInductor lacks); the reason is also left in the failure note."""
    if not compilable(bundle):
        raise CompileError(f"{bundle.name} cannot be compiled: only the UNet families' networks, in fp32 on the CPU.")
    path = package_path(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(bundle, 2)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    names = ("x", "t", "y")[:len(inputs)]
    part = path.with_name(f".{path.stem}.{os.getpid()}.part.pt2")  # AOTInductor wants the .pt2 ending
    try:
        # about a second to import: only here and in `attach`, never on the way to a window
        from torch._inductor import aoti_compile_and_package

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations inside export
            program = torch.export.export(bundle.model.eval(), inputs,
                                          dynamic_shapes={name: {0: batch} for name in names})
            aoti_compile_and_package(program, package_path=str(part))
        os.replace(part, path)  # whole or not at all: another process may be looking for it
    except Exception as exc:  # any compiler failure: said, noted, and the network runs eagerly
        part.unlink(missing_ok=True)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        atomic_write(failure_note(path), lambda fh: fh.write(reason.encode() + b"\n"))
        raise CompileError(f"Could not compile {bundle.name}: {reason}") from exc
    failure_note(path).unlink(missing_ok=True)
    return path


@dataclass
class Compiled:
    """A loaded package: called as the network is, for inputs like those it was compiled for."""

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
        return self.runner(x, t) if y is None else self.runner(x, t, y)


def attach(bundle: Any) -> bool:
    """Give `bundle` its compiled forward (`bundle.compiled`) if its package is on disk and reproduces the
    eager forward; False (and nothing changed) otherwise."""
    if not compilable(bundle):
        return False
    path = package_path(bundle)
    if not path.is_file():
        return False
    try:
        from torch._inductor import aoti_load_package

        runner = aoti_load_package(str(path))
        inputs = example_inputs(bundle, 3)  # another batch size than the package was traced with
        with torch.inference_mode():
            expected, got = bundle.model(*inputs), runner(*inputs)
        error = (got - expected).abs().max().item() / (expected.abs().max().item() + 1e-6)
        if got.shape != expected.shape or not error <= TOLERANCE:
            raise ValueError(f"it differs from the network by {error:.1e}")
    except Exception as exc:  # noqa: BLE001 — a damaged, foreign or stale package: run eagerly
        log.warning("The compiled package %s is not used (%s: %s); %s runs eagerly.",
                    path.name, type(exc).__name__, exc, bundle.name)
        return False
    bundle.compiled = Compiled(runner, path, conditional=len(inputs) == 3, sample_dims=inputs[0].dim())
    return True


def wanted(bundle: Any) -> bool:
    """Whether compiling `bundle`'s network is worth starting: it qualifies, has no package yet, and has
    not failed to compile with this torch."""
    if not compilable(bundle) or getattr(bundle, "compiled", None) is not None:
        return False
    path = package_path(bundle)
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
