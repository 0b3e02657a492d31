"""The optional third-party libraries (diffusers, transformers), imported only when such a model is opened,
offline, and never allowed to unpickle code."""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import re
import sys
from types import ModuleType
from typing import Iterator

import torch

INSTALL_HINT = 'pip install "guidance-studio[diffusers]"  (from a source checkout: pip install -e ".[diffusers]")'


def require(name: str) -> ModuleType:
    """Import `name` ("diffusers" or "transformers") for reading a pipeline, offline.

    The hub's offline switches are set before the first import, so nothing these libraries do can reach
    the network; a missing library is a ValueError that says how to add it.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if getattr(sys, "frozen", False):  # the installers leave the extra out (packaging/README.md)
            raise ValueError("This installed build opens no diffusers pipelines (it leaves out diffusers and "
                             "transformers); install Guidance Studio with pip for them: "
                             f"{INSTALL_HINT}") from None
        raise ValueError(f"Opening diffusers pipelines needs the optional packages diffusers and transformers "
                         f"({exc.name or name} is missing). Add them with: {INSTALL_HINT}") from None


@contextlib.contextmanager
def weights_only_loading() -> Iterator[list[str]]:
    """While open, every `torch.load` (the libraries' path for `.bin`/`.ckpt` files) runs with
    weights_only=True, whatever the caller asked: a pickle that wants to run code is refused.

    Yields a list that collects, for each refused file, what it asked for (the libraries wrap the
    refusal in their own errors, so the caller looks here to say why a load failed).
    """
    original = torch.load
    refused: list[str] = []

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return original(*args, **kwargs)
        except pickle.UnpicklingError as exc:
            wanted = re.search(r"GLOBAL ([\w.]+)", str(exc))
            refused.append(wanted.group(1) if wanted else "objects other than tensors")
            raise

    torch.load = guarded
    try:
        yield refused
    finally:
        torch.load = original
