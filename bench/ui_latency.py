"""GUI responsiveness while sampling: the real window, offscreen.

For toy-gmm (DDPM, 1000 steps, batch 2000) and an image model (the first built-in image bundle, or
a small stand-in conv net on 3×64×64 when none is installed) it prints:
  - the largest gap between ticks of a 10 ms QTimer on the GUI thread during the run (target ≤ 50 ms),
    with the median and 99th percentile;
  - the time from Start to the first frame painted;
  - frames painted vs steps run (coalescing drops frames the GUI had no time for).
Usage: python bench/ui_latency.py [--steps 1000] [--batch 2000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from torch import nn  # noqa: E402


class StandInUNet(nn.Module):
    """A few 3×3 convolutions at full resolution: image-sized work per step, no trained weights."""

    def __init__(self, channels: int = 3, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x, t, y=None):
        return 0.1 * self.net(x)


def wait_for(app: QApplication, signal, timeout_s: float = 120.0) -> list:
    got: list = []
    loop = QEventLoop()
    signal.connect(lambda *a: (got.append(a), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    return got


def idle_gaps(app: QApplication, seconds: float) -> np.ndarray:
    """Gaps (ms) between 10 ms ticks while nothing runs: what the machine itself allows."""
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    timer.stop()
    return np.diff(ticks) * 1000


def measure(app: QApplication, win, label: str) -> None:
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    shown: list[int] = []
    win.frame_shown.connect(shown.append)
    timer.start()
    start = time.perf_counter()
    if not win.start_run():
        print(f"{label}: could not start: {win.last_error}")
        return
    finished = wait_for(app, win.run_finished, 600)
    end = time.perf_counter()
    timer.stop()
    win.frame_shown.disconnect()
    if not finished:
        print(f"{label}: timed out")
        return
    result = finished[0][0]
    ticks = [t for t in ticks if start <= t <= end]
    gaps = np.diff([start, *ticks, end]) * 1000
    first = (win.first_frame_at - start) * 1000 if win.first_frame_at else float("nan")
    print(f"{label}")
    print(f"  run: {len(result.xt_frames) - 1} steps in {end - start:.2f} s on {result.device}; "
          f"frames painted: {len(shown)}")
    print(f"  GUI timer (10 ms) gaps: max {gaps.max():.1f} ms, p99 {np.percentile(gaps, 99):.1f} ms, "
          f"median {np.median(gaps):.1f} ms  (target max ≤ 50 ms)")
    print(f"  Start → first frame on screen: {first:.1f} ms")
    stamps = np.array([start, *ticks, end]) - start
    worst = np.argsort(gaps)[::-1][:4]
    print("  largest gaps (ms, ending at ms after Start): "
          + ", ".join(f"{gaps[i]:.0f} @ {1000 * stamps[i + 1]:.0f}" for i in worst))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="override sys.setswitchinterval (seconds) to compare GIL hand-over settings")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    scratch = tempfile.mkdtemp(prefix="ui-latency-")
    os.environ["GUIDANCE_STUDIO_DATA"] = scratch  # keep the bench's runs out of the user's library
    app = QApplication.instance() or QApplication([])
    from desktop_app.main_window import MainWindow

    win = MainWindow(settings=QSettings(os.path.join(scratch, "studio.ini"), QSettings.Format.IniFormat))
    win.resize(1500, 950)
    win.show()
    t0 = time.perf_counter()
    win.begin_startup()
    if not wait_for(app, win.model_loaded):
        print("the default model did not load:", win.last_error)
        return 1
    print(f"engine + toy-gmm loaded {1000 * (time.perf_counter() - t0):.0f} ms after begin_startup; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    app.processEvents()

    idle = idle_gaps(app, 3.0)
    print(f"idle window, no run (machine baseline): max gap {idle.max():.1f} ms, p99 {np.percentile(idle, 99):.1f} ms")
    win.session.update(sampler="ddpm", steps=args.steps, batch_points=args.batch, guidance="cfg", weight=3.0)
    measure(app, win, f"toy-gmm: DDPM {args.steps} steps, batch {args.batch}, CFG w=3")

    from core import list_models

    images = [i for i in list_models() if len(i.data_shape) == 3]
    if images:
        win.loader.load(images[0].name)
        wait_for(app, win.model_loaded)
        win.session.update(sampler="ddim", steps="100", batch_images=16, guidance="none")
        label = f"{images[0].name}: DDIM 100 steps, batch 16, {'×'.join(map(str, images[0].data_shape))}"
    else:
        from core import ModelBundle, ModelConfig

        config = ModelConfig(architecture="stand-in", data_shape=(3, 64, 64))
        win.set_bundle(ModelBundle("stand-in-64px", config, StandInUNet()))
        win.session.update(sampler="ddim", steps="100", batch_images=16, guidance="none")
        label = "stand-in conv net 3×64×64: DDIM 100 steps, batch 16"
    measure(app, win, label)
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
