"""Fast checks of the installer recipes (packaging/) and the installed app's self-test.

The full build runs in packaging/smoke.sh (minutes); these tests check, in seconds, what that build
relies on: the spec evaluates and ships the right files, the excluded modules are really unused,
the menu entry, icons and installer scripts are well-formed, and `--self-test` passes and fails
when it should.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"


class _Recorder:
    """Stands in for one of PyInstaller's spec classes and keeps its arguments."""

    calls: dict[str, "_Recorder"] = {}

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.binaries, self.datas, self.pure, self.scripts = [], list(kwargs.get("datas", [])), [], []
        _Recorder.calls[type(self).__name__] = self


def run_spec(dist: Path) -> dict:
    """The spec's namespace after running it with recording stand-ins for PyInstaller."""
    _Recorder.calls = {}
    names = {n: type(n, (_Recorder,), {}) for n in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")}
    namespace = {"SPECPATH": str(PACKAGING), "DISTPATH": str(dist),
                 "__file__": str(PACKAGING / "guidance-studio.spec"), **names}
    source = (PACKAGING / "guidance-studio.spec").read_text()
    exec(compile(source, "guidance-studio.spec", "exec"), namespace)
    namespace["calls"] = dict(_Recorder.calls)
    return namespace


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    return run_spec(tmp_path_factory.mktemp("dist"))


def test_spec_ships_resources_as_files_and_the_launcher(spec):
    analysis = spec["calls"]["Analysis"]
    assert analysis.args[0] == [str(PACKAGING / "launcher.py")]
    datas = {(Path(src).relative_to(ROOT).as_posix(), dest) for src, dest in analysis.kwargs["datas"]}
    assert ("resources/icons/app-256.png", "resources/icons") in datas
    assert not any(src.endswith((".py", ".pyc")) for src, _ in datas)
    shipped = {src for src, _ in datas}
    for model in (ROOT / "resources" / "models").glob("*.safetensors"):
        assert f"resources/models/{model.name}" in shipped
    assert spec["VERSION"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert spec["calls"]["COLLECT"].kwargs["name"] == "guidance-studio"


def test_spec_drops_headers_tests_and_translations_but_keeps_what_torch_opens(spec):
    keep = spec["keep"]
    for dropped in ("torch/include/ATen/ATen.h", "torch/bin/test_api", "torch/bin/protoc",
                    "torch/lib/libtorchbind_test.so", "PySide6/Qt/translations/qt_de.qm", "torch/lib/libfoo.a"):
        assert not keep((dropped, "/src/" + dropped, "DATA")), dropped
    for kept in ("torch/bin/torch_shm_manager", "torch/lib/libtorch_cpu.so", "PySide6/Qt/lib/libQt6Gui.so.6",
                 "PySide6/Qt/plugins/platforms/libqxcb.so", "resources/models/mnist-cfg.safetensors"):
        assert keep((kept, "/src/" + kept, "BINARY")), kept


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_spec_platform_settings(platform, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", platform)
    calls = run_spec(tmp_path)["calls"]
    exe = calls["EXE"].kwargs
    assert exe["console"] is False, "a windowed app on Windows and macOS"
    assert exe["icon"] == str(ICONS / ("app.ico" if platform == "win32" else "app.icns"))
    assert Path(exe["icon"]).is_file()
    if platform == "darwin":
        bundle = calls["BUNDLE"].kwargs
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert bundle["name"] == "Guidance Studio.app" and bundle["version"] == version
        assert bundle["info_plist"]["CFBundleShortVersionString"] == version
        assert bundle["info_plist"]["CFBundleName"] == "Guidance Studio"
    else:
        assert "BUNDLE" not in calls


def test_app_starts_and_samples_without_the_excluded_modules(spec):
    """Start the app's modules with every excluded module made unimportable, as in the bundle."""
    probe = (
        "import sys, importlib.abc\n"
        "EXCLUDED = %r\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if any(name == e or name.startswith(e + '.') for e in EXCLUDED):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import desktop_app.__main__, desktop_app.selftest, core\n"
        "try:\n    import desktop_app.main_window\nexcept ModuleNotFoundError as exc:\n"
        "    if exc.name != 'desktop_app.main_window':\n        raise\n"
        "from core import final_sample, load_model, SamplingRequest, DEFAULT_MODEL\n"
        "final_sample(SamplingRequest(model=DEFAULT_MODEL, steps='3', batch=2), load_model(DEFAULT_MODEL, 'cpu'))\n"
        "from desktop_app import selftest\n"
        "selftest.check_qt(); selftest.check_window()  # the installed --self-test's window check\n"
        "from core import list_models\n"
        "for info in list_models():  # opening every built-in model file\n"
        "    load_model(info.path or info.name, 'cpu')\n"
        "print('started', sorted(m for m in sys.modules if m.startswith('PySide6.Qt')))\n"
    ) % (spec["EXCLUDED_MODULES"],)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "started" in result.stdout and "PySide6.QtOpenGL" in result.stdout
    assert "PySide6.QtOpenGL" in spec["HIDDEN_IMPORTS"]


def test_desktop_entry():
    path = PACKAGING / "linux" / "guidance-studio.desktop"
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read(path)
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "guidance-studio"
    assert entry["Icon"] == "guidance-studio"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_icon_set_has_every_size_and_matches_the_drawing(qapp):
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))
    for size in make_icons.PNG_SIZES:
        with Image.open(make_icons.png_path(size)) as image:
            assert image.size == (size, size) and image.mode == "RGBA"
            assert image.getpixel((0, 0))[3] == 0, "corners are transparent (rounded square)"
            committed = torch.from_numpy(np.asarray(image, dtype=np.float32))
        if size in (16, 256):  # re-render from the SVG: the PNGs must be current with the drawing
            rendered = torch.from_numpy(np.asarray(make_icons.render(size), dtype=np.float32))
            assert (committed - rendered).abs().mean() < 2.0, f"app-{size}.png is stale: run make_icons.py"
    with Image.open(ICONS / "app.ico") as ico:
        assert {(s, s) for s in make_icons.ICO_SIZES} <= set(ico.info["sizes"])
    with Image.open(ICONS / "app.icns") as icns:
        assert icns.size == (1024, 1024) or icns.size == (512, 512)


def test_macos_plist_and_windows_installer_point_at_real_files():
    plist = plistlib.loads((PACKAGING / "macos" / "Info.plist").read_bytes())
    assert plist["CFBundleShortVersionString"] == "@VERSION@" and plist["NSHighResolutionCapable"] is True
    iss = (PACKAGING / "windows" / "guidance-studio.iss").read_text()
    repo = (PACKAGING / "windows" / re.search(r'#define Repo "(.*)"', iss).group(1).replace("\\", "/")).resolve()
    assert repo == ROOT
    icon = re.search(r"SetupIconFile=\{#Repo\}\\(.*)", iss).group(1).strip().replace("\\", "/")
    assert (ROOT / icon).is_file()
    assert 'Source: "{#Repo}\\dist\\guidance-studio\\*"' in iss


def test_shell_scripts_parse_and_share_the_library_resolution():
    for script in ("build.sh", "smoke.sh"):
        path = PACKAGING / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
        assert ". packaging/linux/syslibs.sh" in path.read_text()
    subprocess.run(["bash", "-n", str(PACKAGING / "linux" / "syslibs.sh")], check=True)


def syslibs(command: str, stdin: str = "") -> str:
    script = f". {PACKAGING / 'linux' / 'syslibs.sh'}; {command}"
    return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, text=True, check=True).stdout


def test_optional_qt_plugins_are_told_apart_from_required_ones():
    paths = ["/b/_internal/PySide6/Qt/plugins/platforms/libqwayland.so",  # PySide6 6.11's Wayland plugin
             "/b/_internal/PySide6/Qt/plugins/wayland-shell-integration/libxdg-shell.so",
             "/b/_internal/PySide6/Qt/plugins/platformthemes/libqgtk3.so",
             "/b/_internal/PySide6/Qt/lib/libQt6WlShellIntegration.so.6",
             "/b/_internal/PySide6/Qt/plugins/platforms/libqxcb.so",
             "/b/_internal/PySide6/Qt/lib/libQt6Gui.so.6", "/b/guidance-studio"]
    optional = syslibs('grep -E "$SYSLIBS_OPTIONAL_RE" || true', "\n".join(paths)).split()
    assert optional == paths[:4]


@pytest.mark.skipif(not shutil.which("dpkg") or not shutil.which("ldd"), reason="needs dpkg and ldd (Debian)")
def test_depends_come_from_the_libraries_the_qt_xcb_plugin_loads():
    """What build.sh writes into Depends, on the xcb plugin of the installed PySide6: the xcb libraries
    a bare system lacks (libxcb-cursor0 …) are there because the plugin links them."""
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    plugin = qt / "plugins" / "platforms" / "libqxcb.so"
    packages = syslibs(f'syslibs_packages "{qt / "lib"}"', f"{plugin}\n").split()
    for package in ("libxcb-cursor0", "libxcb-icccm4", "libxkbcommon-x11-0", "libxcb-keysyms1", "libc6"):
        assert package in packages
    assert not any(p.startswith("libqt6") or "pyside" in p for p in packages)  # the bundle's own Qt is inside


def test_build_extra_has_pyinstaller_and_the_base_does_not():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.lower().startswith("pyinstaller") for dep in project["optional-dependencies"]["build"])
    assert not any(dep.lower().startswith("pyinstaller") for dep in project["dependencies"])


# --- the self-test entry point, in process -----------------------------------------------------

def test_selftest_passes_on_a_working_install(qapp, capsys, monkeypatch):
    from desktop_app import selftest

    monkeypatch.setattr(selftest, "_main_window_factory", lambda: None)  # the window has its own tests
    assert selftest.run(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ok    qt: PySide6 ", out, re.M)
    assert re.search(r"^ok    model toy-gmm: 10 ddim steps, guidance both, shape \(4, 2\)", out, re.M)
    assert "FAIL" not in out and "self-test passed" in out


def test_selftest_fails_with_a_reason_when_sampling_goes_wrong(qapp, capsys, monkeypatch):
    import core
    from desktop_app import selftest

    real = core.final_sample

    def broken(request, bundle):
        step = real(request, bundle)
        return dataclasses.replace(step, x=torch.full_like(step.x, float("nan")))

    monkeypatch.setattr(selftest, "_main_window_factory", lambda: None)
    monkeypatch.setattr(core, "final_sample", broken)
    assert selftest.run([]) == 1
    out = capsys.readouterr().out
    assert "FAIL  model toy-gmm: samples contain NaN or infinite values" in out
    assert "self-test FAILED" in out


def test_selftest_window_check_shows_the_window(qapp, monkeypatch):
    from PySide6.QtWidgets import QWidget

    from desktop_app import selftest

    shown, seen = [], []
    monkeypatch.setenv("GUIDANCE_STUDIO_DATA", "/users/own/data")

    class Window(QWidget):
        def __init__(self, settings):
            super().__init__()
            self.setWindowTitle("Guidance Studio")
            settings.setValue("probe", 1)  # lands in a throw-away file, not the user's settings
            seen.append((settings.fileName(), os.environ["GUIDANCE_STUDIO_DATA"]))

        def showEvent(self, event):
            shown.append(True)
            super().showEvent(event)

    monkeypatch.setattr(selftest, "_main_window_factory", lambda: Window)
    assert selftest.check_window().startswith("Window 'Guidance Studio'")
    assert shown == [True]
    (settings_file, data_dir), = seen
    assert "guidance-studio-selftest-" in settings_file and "guidance-studio-selftest-" in data_dir
    assert not Path(settings_file).exists(), "the throw-away settings are removed"
    assert os.environ["GUIDANCE_STUDIO_DATA"] == "/users/own/data"


def test_selftest_reports_an_unexpected_error_on_one_line(capsys):
    from desktop_app import selftest

    def broken() -> str:
        raise ImportError("Importing the C-extensions failed.\n\nMany lines of advice.\n\nOriginal error was: libfoo.so: bad ELF")

    assert selftest._run_check("numpy", broken) is False
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert line.startswith("FAIL  numpy: ImportError: Original error was: libfoo.so: bad ELF (test_packaging.py:")
