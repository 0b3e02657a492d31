"""Writing files atomically, with the permissions any other program would give them. No torch.

Every file the project writes for a user (PNGs, GIFs, run files, model bundles, network files) is
written to a temporary name beside its target and renamed over it, so a failed or interrupted write
never leaves a half-written file under the real name. The temporary name is private (mode 0600 while
it is written) and the finished file gets the mode a newly created file gets under the process umask
(0644 under umask 022), as every other program's files do.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class SaveError(OSError):
    """Writing a file failed (unwritable folder, full disk); nothing half-written was left behind."""


def default_mode() -> int:
    """0o666 less the process umask: the mode a newly created regular file gets (0o644 under umask 022).

    Read from /proc where it is shown, because setting the umask to read it back (the portable way)
    changes it for every thread for a moment.
    """
    try:
        status = Path("/proc/self/status").read_text()
        match = re.search(r"^Umask:\s*([0-7]+)$", status, re.MULTILINE)
        if match:
            return 0o666 & ~int(match[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_save(path: str | Path, save: Callable[[Path], object]) -> Path:
    """Call `save(temporary_path)` (a writer that takes a path: safetensors, numpy) on a temporary name
    beside `path`, give the result the usual mode, and rename it to `path`.

    On any failure the temporary file is removed, `path` is untouched, and SaveError says why
    (an OSError of the writer becomes a SaveError; other errors pass through unchanged).
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        save(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename, so a crash cannot leave an empty file
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())  # after `save`: some writers replace the file they are given
        os.replace(tmp, path)
        tmp = None
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(f"Could not save {path.name} in {path.parent}: {exc.strerror or exc}.") from exc
    finally:
        if tmp is not None:
            try:
                tmp.unlink()
            except OSError:
                pass
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a binary file open on a temporary name beside `path`, then rename it to
    `path` (as `atomic_save`, with its guarantees)."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    return atomic_save(path, save)
