"""Can Qt open a window here? Named in one line when it cannot, before Qt is asked to.

On Linux under X11, Qt's xcb platform plugin links a set of small xcb libraries that a bare system may
lack (Qt ≥ 6.5 needs libxcb-cursor0, which older desktops did not install). Qt then prints several lines
and aborts the process. `platform_problem` looks first: it lists the libraries the plugin cannot find
and names the Debian/Ubuntu packages that provide them.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The Debian/Ubuntu package of each library Qt's xcb plugin (and Qt's GUI library under it) links.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0", "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6", "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinput.so.0": "libxcb-xinput0", "libxcb-glx.so.0": "libxcb-glx0", "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6", "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
}


def requested_platform(argv: list[str]) -> str | None:
    """The Qt platform asked for by `-platform`/`--platform NAME` or QT_QPA_PLATFORM; None: Qt's choice."""
    for i, arg in enumerate(argv):
        if arg in ("-platform", "--platform") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--platform="):
            return arg.split("=", 1)[1]
    return os.environ.get("QT_QPA_PLATFORM") or None


def platform_problem(argv: list[str]) -> str | None:
    """One line saying why Qt's xcb plugin cannot load here and what to install, or None (no problem
    found, or not a Linux X11 start: other platforms fail, if at all, with Qt's own message)."""
    if not sys.platform.startswith("linux"):
        return None
    platform = requested_platform(argv)
    if platform is None:  # Qt's default: wayland under a Wayland session, else xcb when there is a display
        if os.environ.get("WAYLAND_DISPLAY") or not os.environ.get("DISPLAY"):
            return None
        platform = "xcb"
    if platform.split(":")[0] != "xcb":
        return None
    missing = missing_libraries(_xcb_plugin())
    if not missing:
        return None
    packages = sorted({PACKAGES.get(lib, lib) for lib in missing})
    return (f"Guidance Studio cannot open its window: Qt's X11 (xcb) platform plugin needs {', '.join(missing)}, "
            f"which this system lacks; install {' '.join(packages)} (sudo apt install {' '.join(packages)}).")


def _xcb_plugin() -> Path | None:
    from PySide6.QtCore import QLibraryInfo  # QtCore needs no display

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(library: Path | None) -> list[str]:
    """The shared libraries `library` needs that the dynamic linker cannot find (ldd's "not found";
    without ldd, the one dlopen names)."""
    if library is None:
        return []
    ldd = shutil.which("ldd")
    if ldd is not None:
        try:
            out = subprocess.run([ldd, str(library)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None:
            return parse_ldd(out)
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        match = re.match(r"([^:\s]+\.so[.\d]*): cannot open shared object file", str(exc))
        return [match[1]] if match else []
    return []


def parse_ldd(text: str) -> list[str]:
    """The "NAME => not found" libraries of ldd's output, in order, once each."""
    found = re.findall(r"^\s*(\S+) => not found", text, re.MULTILINE)
    return list(dict.fromkeys(found))
