"""The headless command line. Each sub-command lives in `core/commands/<name>.py`, which defines
`register(subparsers)`: it adds its parser and sets `func(args) -> int` as the parser default.
Bad arguments, files that cannot be read or written and runs that do not fit in memory exit with status 2
and one readable line on stderr; Ctrl+C exits with status 130."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Guidance Studio's engine, headless.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{module}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError, OSError) as exc:  # OSError: a file that cannot be read or written
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        print(f"error: out of memory ({_one_line(exc)}); try a smaller --batch or --num-samples.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl+C: what the command keeps on disk it has said itself
        print("stopped (Ctrl+C)", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _out_of_memory(exc: BaseException) -> bool:
    """torch's allocation failures (CUDA OutOfMemoryError, the CPU allocator's RuntimeError) and MemoryError."""
    text = str(exc)
    return (isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__
            or "can't allocate memory" in text or "out of memory" in text.lower())
