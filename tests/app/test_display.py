"""A start that Qt's xcb plugin cannot serve says, in one line, which package to install."""
from __future__ import annotations

import pytest

from desktop_app import display

LDD = """\tlinux-vdso.so.1 (0x00007ffc)
\tlibQt6XcbQpa.so.6 => /opt/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibxcb-cursor.so.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
"""


def test_ldd_output_gives_the_missing_libraries_once_each():
    assert display.parse_ldd(LDD) == ["libxcb-cursor.so.0", "libxkbcommon-x11.so.0"]


@pytest.fixture
def missing(monkeypatch):
    monkeypatch.setattr(display, "missing_libraries", lambda _plugin: ["libxcb-cursor.so.0", "libxcb-icccm.so.4"])
    monkeypatch.setattr(display.sys, "platform", "linux")


def test_a_missing_xcb_library_is_named_with_its_package(missing, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert display.platform_problem([]) == (
        "Guidance Studio cannot open its window: Qt's X11 (xcb) platform plugin needs libxcb-cursor.so.0, "
        "libxcb-icccm.so.4, which this system lacks; install libxcb-cursor0 libxcb-icccm4 "
        "(sudo apt install libxcb-cursor0 libxcb-icccm4).")


@pytest.mark.parametrize("argv, env, applies", [
    (["--platform", "xcb"], {}, True),
    (["-platform", "offscreen"], {"DISPLAY": ":0"}, False),
    ([], {"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, False),
    ([], {"DISPLAY": ":0"}, True),  # Qt's default on X11
    ([], {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, False),
    ([], {}, False),  # no display at all: Qt's own message
])
def test_only_an_xcb_start_is_checked(missing, monkeypatch, argv, env, applies):
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (display.platform_problem(argv) is not None) == applies


def test_the_app_stops_with_that_line_instead_of_qts_abort(missing, capsys):
    from desktop_app.__main__ import main

    assert main(["--platform", "xcb"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sudo apt install libxcb-cursor0 libxcb-icccm4" in err


def test_the_self_test_says_so_and_ends_normally(missing, monkeypatch, capsys):
    """It went on to build the window without a QApplication: Qt's fatal error, SIGABRT (rc 134)."""
    import core
    from desktop_app import selftest

    tried = []
    monkeypatch.setattr(selftest, "check_window", lambda: tried.append("window") or "shown")
    monkeypatch.setattr(core, "list_models", lambda: [])
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # run() sets it from --platform; restored afterwards
    assert selftest.run(["--self-test", "--platform", "xcb"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("FAIL  qt: Guidance Studio cannot open its window: Qt's X11 (xcb) platform plugin")
    assert out[2] == "FAIL  window: not tried, Qt did not start" and tried == []
    assert out[-1].startswith("self-test FAILED")
