"""`python -m core compile --model NAME|PATH`: compile a network's forward for this CPU, once (core/compiled.py).

Prints where the compiled library went, how long compiling took and one forward's time before and after; a network
that has one already is only timed. Exit status 2, with the reason in one line, when it cannot be
compiled (no C++ compiler, a network that is not ours). `--background` lowers the
process's priority first: the app runs it that way while a person works.
"""
from __future__ import annotations

import os
import time

from .. import compiled
from ..registry import DEFAULT_MODEL, load_model


def register(subparsers) -> None:
    p = subparsers.add_parser("compile", help="compile a model's network for this CPU (once; runs get faster)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="a built-in model's name or a model file")
    p.add_argument("--force", action="store_true", help="compile again even if a compiled library is there")
    p.add_argument("--background", action="store_true", help="at low priority (what the app does)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.background and hasattr(os, "nice"):
        os.nice(10)
    bundle = load_model(args.model, "cpu")
    path = compiled.library_path(bundle)
    if args.force or not path.is_file():
        start = time.perf_counter()
        compiled.compile_network(bundle)  # CompileError: exit status 2, one line
        print(f"compiled {bundle.name} in {time.perf_counter() - start:.1f} s → {path}", flush=True)
    else:
        print(f"{bundle.name} is compiled already: {path}")
    eager = bundle.model
    if not compiled.attach(bundle):
        raise compiled.CompileError(f"The library compiled for {bundle.name} does not reproduce its network; "
                                    "it is not used.")
    inputs = compiled.example_inputs(bundle, 16)
    before = compiled.timed_forward(eager, inputs)
    after = compiled.timed_forward(bundle.compiled, inputs)
    print(f"one forward of 16: {before * 1e3:.1f} ms eager, {after * 1e3:.1f} ms compiled ({before / after:.2f}×)")
    return 0
