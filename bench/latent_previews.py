"""What the app's live pictures of a latent model cost (issue 11 item 6; prints figures, exits 0).

The same random Stable Diffusion pipeline as bench/diffusers_speed.py, sampled three ways, alternated after
one warm-up each (the warm-up also measures the VAE decode, as a model's first run in the app does):
  sampler    the sampling loop recording every step's fast previews (linear latent→RGB of x_t and x̂0, on
             the CPU as uint8): what a run costs with no exact pictures;
  app        the app's worker (desktop_app.run.worker.SamplingWorker) with a simulated window taking the
             newest frame every 33 ms: x̂0 is VAE-decoded for the frames it will paint, within 4 % of the
             run's time (core.latent_preview), and the final images are decoded;
  exact      the worker with "VAE-decode x₀ every step".
The goal is app ÷ sampler ≤ 1.10 on a GPU (the decode budget is 4 %, the diagnostics' 3 % come on top only
with a classifier, which Stable Diffusion has not). Both include the final decode.

    python bench/latent_previews.py                  # CPU: the small preset
    python bench/latent_previews.py --preset sd15    # CUDA: SD-1.5 shapes, 512×512, fp16, 30 steps
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from diffusers_speed import GAMMA, parse_args, setup  # noqa: E402

from core import SamplingRequest, sample  # noqa: E402
from core.recording import Recorder  # noqa: E402

PAINT_INTERVAL = 0.033  # the window paints at most ~30 frames a second (desktop_app.main_window)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sampler_only(request: SamplingRequest, bundle) -> None:
    recorder = Recorder.for_bundle(request, bundle)
    last = None
    for last in sample(request, bundle):
        recorder.add(last)
    recorder.flush()
    bundle.decode(last.x).float().cpu()  # the final images, as the app makes them


def app_worker(request: SamplingRequest, bundle, exact: bool, decoded: list[int]) -> None:
    from desktop_app.run.worker import SamplingWorker

    worker = SamplingWorker(request, bundle, paint_interval=PAINT_INTERVAL, exact_decode=exact)
    worker.start()
    while worker.is_running():  # the window: take the newest frame, paint, come back
        worker.take_frame()
        time.sleep(PAINT_INTERVAL)
    worker.wait()
    previews = worker.exact_previews
    decoded.append((len(previews.decoded_steps), previews.spent))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "way")
    bench = setup(args)
    request, bundle, device, steps = bench.request, bench.bundle, bench.device, bench.steps
    size = bench.preset["size"]
    print(f"{bench.name}: {size}×{size}, {steps} DDIM steps, CFG γ = {GAMMA}, batch 1, {bench.precision} on "
          f"{bench.card}")
    decoded: dict[str, list[tuple[int, float]]] = {"app": [], "exact": []}
    ways = {"sampler": lambda: sampler_only(request, bundle),
            "app": lambda: app_worker(request, bundle, False, decoded["app"]),
            "exact": lambda: app_worker(request, bundle, True, decoded["exact"])}
    times: dict[str, list[float]] = {way: [] for way in ways}
    for repeat in range(args.repeats + 1):
        for way, run in ways.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            if repeat:
                times[way].append(time.perf_counter() - start)
    best = {way: min(values) for way, values in times.items()}
    for way in ways:
        extra = ""
        if way in decoded:
            count, spent = decoded[way][-1]
            extra = f"; x̂0 decoded at {count} of {steps} steps (the last included), {spent:.3f}s before the last"
        print(f"  {way:8s} best {best[way]:.3f}s of {args.repeats} ({', '.join(f'{t:.3f}' for t in times[way])})"
              f"{extra}")
    print(f"  app / sampler   : {best['app'] / best['sampler']:.3f}   (goal ≤ 1.10 on GPU)")
    print(f"  exact / sampler : {best['exact'] / best['sampler']:.3f}   (what 'VAE-decode x₀ every step' costs)")
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB ({bench.card})")


if __name__ == "__main__":
    main()
