"""Run files (core.runs): their size on disk and write time for the three budgets of issue 10, and
whether writing one slows a run sampling at the same time.

Cases (each recorded with core.recording.Recorder and the guidance views' tracks of the app's default
options, guidance maps on and the unguided twin off, and written with core.runs.write_run, as the app does):
  mnist   16 MNIST digits (mnist-cfg, 32×32 grey), DDIM 50 steps, CFG w = 2    budget ≤ 2 MB
  toy     1000 points of toy-gmm, DDPM 1000 steps, classifier guidance s = 1  budget ≤ 8 MB
  big     4 images 3×256×256, 250 steps                                       budget ≤ 60 MB
The 256×256 case uses a stand-in network (a fixed smooth field plus a small conv net; no trained
256×256 model ships with the studio). The file size depends on the previews, not on the network: x_t is
noise whatever the model, and the previews are shrunk to core.runs.PREVIEW_BUDGET bytes in any case.
Then a toy run (DDIM 200 steps, 2000 points) is timed alone and while the big run file is written on
another thread at the lowest priority, as the app writes it (desktop_app.tasks.lower_thread_priority),
alternating the two, best of three each: the ratio says how much writing delays it.
Usage: python bench/run_records.py [--only mnist,toy,big] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, load_model, sample  # noqa: E402
from core.guidance_views import guidance_tracks  # noqa: E402
from core.recording import Recorder  # noqa: E402
from core.runs import PREVIEW_BUDGET, RUN_SUFFIX, read_run, write_run  # noqa: E402
from desktop_app.tasks import lower_thread_priority  # noqa: E402

BUDGETS_MB = {"mnist": 2.0, "toy": 8.0, "big": 60.0}


class StandIn256(nn.Module):
    """ε that pulls x_t towards a fixed smooth picture (so x̂0 looks like an image) plus a small conv net."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        target = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, size=256,
                                                 mode="bicubic", align_corners=False)
        self.register_buffer("target", target.clamp(-1, 1))
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x, t, y=None):
        return 0.7 * (x - self.target) + 0.01 * self.net(x)


def case(name: str, device: str) -> tuple[SamplingRequest, ModelBundle]:
    if name == "mnist":
        bundle = load_model("mnist-cfg", device=device)
        return SamplingRequest(model=bundle.name, steps="50", batch=16, label=tuple(range(10)) + (0,) * 6,
                               guidance=Guidance("cfg", weight=2.0), seed=0), bundle
    if name == "toy":
        bundle = load_model("toy-gmm", device=device)
        return SamplingRequest(model=bundle.name, sampler="ddpm", steps="1000", batch=1000, label=3,
                               guidance=Guidance("classifier", scale=1.0), seed=0), bundle
    config = ModelConfig(architecture="stand-in", data_shape=(3, 256, 256), clip="clip")
    bundle = ModelBundle("stand-in-256", config, StandIn256()).to(device)
    return SamplingRequest(model=bundle.name, steps="250", batch=4, seed=0), bundle


def record(request: SamplingRequest, bundle: ModelBundle):
    recorder = Recorder.for_bundle(request, bundle, extras=guidance_tracks(bundle, maps=True, twin=False))
    start = time.perf_counter()
    for step in sample(request, bundle, diagnostics=True):
        recorder.add(step)
    return recorder.result(completed=True), time.perf_counter() - start


def write_in_background(path: Path, result) -> None:
    """What the app's saver thread does: lowest priority, then the run file."""
    lower_thread_priority()
    write_run(path, result)


def toy_run_seconds(bundle: ModelBundle) -> float:
    request = SamplingRequest(model=bundle.name, steps="200", batch=2000, seed=1)
    return record(request, bundle)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="mnist,toy,big")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"run files on {where}; load average {os.getloadavg()[0]:.1f}; preview budget "
          f"{PREVIEW_BUDGET / 2**20:.0f} MiB")
    folder = Path(tempfile.mkdtemp(prefix="run-records-"))
    big = None
    for name in args.only.split(","):
        request, bundle = case(name, device)
        result, sampling = record(request, bundle)
        path = folder / f"{name}{RUN_SUFFIX}"
        start = time.perf_counter()
        write_run(path, result)
        write = time.perf_counter() - start
        start = time.perf_counter()
        back = read_run(path)
        read = time.perf_counter() - start
        size = path.stat().st_size / 1e6
        xt = back.track("xt")[0]
        verdict = "ok" if size <= BUDGETS_MB[name] else "OVER BUDGET"
        print(f"  {name:5s} {request.batch:5d} × {tuple(bundle.config.data_shape)} {len(result) - 1:4d} steps: "
              f"{size:6.2f} MB (budget {BUDGETS_MB[name]:g} MB, {verdict}); write {write:.2f} s, read {read:.2f} s; "
              f"previews {tuple(xt.shape)} {xt.dtype}; sampling took {sampling:.1f} s")
        with zipfile.ZipFile(path) as zf:
            largest = sorted(zf.infolist(), key=lambda i: -i.compress_size)[:4]
        print("        largest: " + ", ".join(f"{i.filename.removesuffix('.npy')} {i.compress_size / 1e6:.2f}"
                                          for i in largest))
        if name == "big":
            big = result
    if big is not None:
        toy = load_model("toy-gmm", device=device)
        toy_run_seconds(toy)  # warm up
        alone, beside = [], []
        for _ in range(args.repeats):
            alone.append(toy_run_seconds(toy))
            writer = threading.Thread(target=write_in_background, args=(folder / f"bg{RUN_SUFFIX}", big))
            writer.start()
            beside.append(toy_run_seconds(toy))
            writer.join()
        print(f"  a toy run (DDIM 200 steps × 2000 points): alone {min(alone):.2f} s, while the big run file is "
              f"written {min(beside):.2f} s (×{min(beside) / min(alone):.2f}), best of {args.repeats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
