"""Entry point of `guidance-studio` and `python -m desktop_app`.

The window is shown first; torch and the default model load afterwards in the background, while
qasync runs Qt's event loop as the asyncio loop (so start-up work is awaited, never blocking).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import threading
import time

APP_NAME = "Guidance Studio"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="guidance-studio", description="Watch guided diffusion sample step by step.")
    parser.add_argument("--self-test", action="store_true", help="check the installation headlessly and exit")
    parser.add_argument("--model", help="a built-in model name or a .safetensors bundle to open first")
    args, _qt_args = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--self-test" in argv:
        try:
            from .selftest import run
        except ImportError as exc:
            print(f"The self-test is not part of this build ({exc}).", file=sys.stderr)
            return 1
        return run(argv)
    args = _parse(argv)
    from .display import platform_problem

    problem = platform_problem(argv)
    if problem:  # Qt would print several lines and abort; say what to install instead
        print(problem, file=sys.stderr)
        return 1

    import qasync
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("GuidanceStudio")
    icon = _icon_path()
    if icon:
        app.setWindowIcon(QIcon(icon))
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)

    window = MainWindow()
    if args.model:
        window.settings.setValue("model_key", args.model)
    window.show()

    async def run_app() -> None:
        await asyncio.sleep(0)  # let the first paint happen before any heavy import
        window.begin_startup()
        await closed.wait()

    with loop:
        loop.run_until_complete(run_app())
    window.settings.sync()
    _join_background_threads(EXIT_WAIT_S)
    # Interpreter shutdown ends with full garbage collections over every object torch and Qt created
    # (over a second on a busy 2-core machine); frozen objects are skipped by them and are still freed
    # by reference counting as the modules are torn down.
    gc.freeze()
    return 0


EXIT_WAIT_S = 1.0  # the window has stopped the run and finished saving by now; loads end within this


def _join_background_threads(timeout: float) -> bool:
    """Wait up to `timeout` s in all for the sampling, loading and saving threads; True if all ended.

    Every one of them is a daemon thread that ends by itself once the window has closed (a stopped run,
    a finished save, an idle pool shut down); one still inside a long native call (loading a large
    model) is left to the interpreter's normal exit.
    """
    from .tasks import close_lanes

    close_lanes()
    deadline = time.monotonic() + timeout
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in others)


def _icon_path() -> str | None:
    try:
        from resources import RESOURCES
    except ImportError:
        return None
    path = RESOURCES / "icons" / "app-256.png"
    return str(path) if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
