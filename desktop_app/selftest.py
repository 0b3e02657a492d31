"""`guidance-studio --self-test`: a headless check that an installed copy of the app works.

Runs without a display (QT_QPA_PLATFORM=offscreen unless the caller set it or passed `--platform
xcb`, which opens the window on the real X display and waits until it is exposed): starts Qt, opens the
main window if the app has one, finds the bundled resources, then loads the default built-in model
and every bundle in resources/models on the CPU and samples a few DDIM steps of each, checking that
the result has the model's shape and is finite. Prints one line per check and returns 0 when all
pass, 1 otherwise (the failing lines say why). The installers' smoke test (packaging/smoke.sh)
runs exactly this against the installed launcher.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
import traceback
from typing import Callable

STEPS = "10"
BATCH = 4
DATA_ENV = "GUIDANCE_STUDIO_DATA"  # the run library's folder (desktop_app.library)


class CheckFailed(Exception):
    """A check's readable reason for failing."""


def _seconds_since_process_start() -> float | None:
    """Wall time since this process was created (Linux /proc), or None where that is unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def check_qt() -> str:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .display import platform_problem

    problem = platform_problem([])
    if problem:
        raise CheckFailed(problem)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "guidance-studio"])
    return f"PySide6 {importlib.import_module('PySide6').__version__}, platform {app.platformName()}"


def _main_window_factory() -> Callable[[], object] | None:
    """The app's main-window class, or None while the app has none."""
    for module_name, attr in (("desktop_app.main_window", "MainWindow"), ("desktop_app.window", "MainWindow")):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        return getattr(module, attr)
    return None


def _wait_exposed(window, timeout: float) -> bool:
    """Process events until the display has exposed `window` (mapped and painted), up to `timeout` s."""
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        handle = window.windowHandle()
        if handle is not None and handle.isExposed():
            return True
        time.sleep(0.01)
    return False


def check_window() -> str:
    """Build and show the main window, with throw-away settings and library so nothing of the user's changes."""
    factory = _main_window_factory()
    if factory is None:
        return "skipped: this build has no main window module"
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    with tempfile.TemporaryDirectory(prefix="guidance-studio-selftest-", ignore_cleanup_errors=True) as tmp:
        settings = QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat)
        saved = os.environ.get(DATA_ENV)
        os.environ[DATA_ENV] = os.path.join(tmp, "data")
        try:
            window = factory(settings=settings)
            window.show()
            QApplication.processEvents()
            if not window.isVisible():
                raise CheckFailed("the main window did not become visible")
            on_screen = QApplication.platformName() != "offscreen"
            if on_screen and not _wait_exposed(window, 10.0):
                raise CheckFailed(f"the main window did not appear on the {QApplication.platformName()} display")
            since_start = _seconds_since_process_start()
            title = window.windowTitle()
            window.close()
            window.deleteLater()
            QApplication.processEvents()
        finally:
            if saved is None:
                os.environ.pop(DATA_ENV, None)
            else:
                os.environ[DATA_ENV] = saved
    shown = f", shown {since_start:.2f} s after process start" if since_start is not None else ""
    where = f", exposed on the {QApplication.platformName()} display" if on_screen else ""
    return f"{type(window).__name__} {title!r}{shown}{where}"


def check_resources() -> str:
    from resources import MODELS, RESOURCES

    icon = RESOURCES / "icons" / "app-256.png"
    if not icon.is_file():
        raise CheckFailed(f"the app icon is missing ({icon})")
    bundles = sorted(MODELS.glob("*.safetensors"))
    return f"{RESOURCES}, {len(bundles)} built-in model files"


def _request_for(info) -> "object":
    """A small request exercising the strongest guidance the model supports."""
    from core import Guidance, SamplingRequest

    if info.null_label and info.has_classifier:
        guidance = Guidance(kind="both", scale=1.0, weight=1.0)
    elif info.null_label:
        guidance = Guidance(kind="cfg", weight=1.0)
    elif info.has_classifier:
        guidance = Guidance(kind="classifier", scale=1.0)
    else:
        guidance = Guidance()
    label = 0 if info.num_classes else None
    return SamplingRequest(model=info.name, sampler="ddim", steps=STEPS, guidance=guidance,
                           label=label, seed=0, batch=BATCH)


def check_model(info) -> str:
    import torch

    from core import final_sample, load_model

    bundle = load_model(info.path if info.path is not None else info.name, device="cpu")
    request = _request_for(info)
    start = time.perf_counter()
    last = final_sample(request, bundle)
    seconds = time.perf_counter() - start
    expected = (BATCH, *bundle.config.data_shape)
    if tuple(last.x.shape) != expected:
        raise CheckFailed(f"samples have shape {tuple(last.x.shape)}, expected {expected}")
    if not bool(torch.isfinite(last.x).all()):
        raise CheckFailed("samples contain NaN or infinite values")
    return f"{request.steps} {request.sampler} steps, guidance {request.guidance.kind}, shape {expected}, {seconds:.2f} s"


def _one_line(exc: BaseException) -> str:
    """`Type: message (file:line)`, keeping a long message's last line (where its cause is)."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    place = f" ({os.path.basename(where.filename)}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}{place}"


def _run_check(name: str, check: Callable[[], str]) -> bool:
    start = time.perf_counter()
    try:
        detail = check()
    except CheckFailed as exc:
        print(f"FAIL  {name}: {exc}", flush=True)
        return False
    except Exception as exc:  # a self-test reports every failure as a line, never a traceback dump
        print(f"FAIL  {name}: {_one_line(exc)}", flush=True)
        return False
    print(f"ok    {name}: {detail} [{time.perf_counter() - start:.2f} s]", flush=True)
    return True


def run(argv: list[str] | None = None) -> int:
    """Run every check; 0 when all pass, 1 otherwise. `--platform NAME` (e.g. xcb) opens the window on
    that Qt platform, i.e. on a real display, instead of offscreen."""
    from .display import requested_platform

    platform = requested_platform([a for a in (argv or []) if a != "--self-test"])
    if platform:
        os.environ["QT_QPA_PLATFORM"] = platform
    start = time.perf_counter()
    frozen = getattr(sys, "frozen", False)
    print(f"Guidance Studio self-test ({'installed bundle' if frozen else 'source'}: {sys.executable})",
          flush=True)
    ok = _run_check("qt", check_qt)
    if ok:
        ok &= _run_check("window", check_window)
    else:  # a widget without a QApplication is Qt's fatal error: the process would abort here
        print("FAIL  window: not tried, Qt did not start", flush=True)
    ok &= _run_check("resources", check_resources)
    try:
        from core import list_models

        infos = list_models()
    except Exception as exc:
        print(f"FAIL  models: cannot list the built-in models: {_one_line(exc)}", flush=True)
        infos, ok = [], False
    for info in infos:
        ok &= _run_check(f"model {info.name}", lambda info=info: check_model(info))
    verdict = "passed" if ok else "FAILED"
    print(f"self-test {verdict}: {len(infos)} models, {time.perf_counter() - start:.2f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
