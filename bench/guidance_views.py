"""What the guidance views cost (issue 12's benchmark; prints figures, exits 0).

For the built-in mnist-cfg (CFG w = 3, label 7) and toy-gmm (CFG + classifier), a run is sampled and
recorded the way the app's worker records it (`core.recording.Recorder`), in five ways:
  plain   the recorder without any guidance-view track (the app before these views)
  off     the views' tracks with maps and twin off (what every run now records: p(k | x_t) of all classes)
  maps    + the CFG and classifier term maps (image models only)
  twin    + the unguided twin sampled in the same forward
  both    maps and twin
and prints off/plain (must stay ≤ 1.10) and maps/off, twin/off, both/off (their cost when on). For the
2-D model it also times one arrow field (11 × 11 points, computed per frame shown, on a helper thread)
against one sampling step. Repeats alternate the variants and each keeps its best time (process CPU time
on the CPU, wall time on a GPU), so other load on the machine disturbs all alike; ratios come from one run.

    PYTHONPATH=. python bench/guidance_views.py                 # CPU: small settings
    PYTHONPATH=. python bench/guidance_views.py --device cuda   # GPU: the app's default settings, fp32
"""
from __future__ import annotations

import argparse
import time

import torch

from core import Guidance, SamplingRequest, guidance_views as V, load_model, sample
from core.recording import Recorder

VARIANTS = {"plain": None, "off": (False, False), "maps": (True, False), "twin": (False, True),
            "both": (True, True)}


def record(request, bundle, variant) -> None:
    options = VARIANTS[variant]
    extras = None if options is None else V.guidance_tracks(bundle, maps=options[0], twin=options[1])
    recorder = Recorder.for_bundle(request, bundle, extras=extras)
    twin = options is not None and options[1]
    for step in sample(request, bundle, diagnostics=True, twin=twin):
        recorder.add(step)
    recorder.result(True)


def best_times(fns: dict, repeats: int) -> dict[str, float]:
    """Each function's best time over `repeats` alternating rounds: CPU time of the whole process on the
    CPU (steadier than wall time on a loaded machine: other processes' time is not counted), wall time
    on a GPU."""
    clock = time.perf_counter if torch.cuda.is_available() else time.process_time
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = min(best[name], clock() - start)
    return best


def bench_model(name: str, request: SamplingRequest, device: str, repeats: int) -> None:
    bundle = load_model(name, device)
    variants = [v for v in VARIANTS if bundle.config.is_image or v in ("plain", "off", "twin")]
    fns = {v: (lambda v=v: record(request, bundle, v)) for v in variants}
    for fn in fns.values():  # warm-up
        fn()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    best = best_times(fns, repeats)
    g = request.guidance
    print(f"\n{name}: {request.batch} samples, {request.sampler.upper()} {request.steps} steps, {g.kind} "
          f"(w={g.weight}, s={g.scale}), label {request.label}")
    for v in variants:
        print(f"  {v:5s} {best[v]:.3f} s")
    print(f"  off/plain {best['off'] / best['plain']:.3f} (must stay <= 1.10)")
    for v in variants[2:]:
        print(f"  {v}/off {best[v] / best['off']:.3f}")
    if not bundle.config.is_image:
        points, _ = V.plane_grid((-2.0, 2.0), (-2.0, 2.0), 11)
        n = bundle.sampling_schedule(request.steps).num_steps
        fields = {"field": lambda: [V.field_vectors(request, bundle, points, k) for k in range(1, n + 1)],
                  "steps": lambda: record(request, bundle, "off")}
        field_best = best_times(fields, repeats)
        print(f"  arrow field of 121 points: {field_best['field'] / n * 1e3:.2f} ms each, "
              f"{field_best['field'] / field_best['steps']:.3f} x a recorded step of the run "
              "(one per frame shown, on a helper thread)")
    if device == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    gpu = args.device == "cuda"
    if not gpu:
        torch.set_num_threads(1)  # no spinning worker threads: CPU time then measures work, not waiting
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"guidance views cost on {where} ({'wall' if gpu else 'process CPU'} time, best of {args.repeats})")
    mnist = SamplingRequest("mnist-cfg", steps="50" if gpu else "20", batch=16 if gpu else 4, label=7,
                            guidance=Guidance("cfg", weight=3.0))
    bench_model("mnist-cfg", mnist, args.device, args.repeats)
    gmm = SamplingRequest("toy-gmm", steps="50", batch=1000, label=2,
                          guidance=Guidance("both", weight=3.0, scale=2.0))
    bench_model("toy-gmm", gmm, args.device, args.repeats)


if __name__ == "__main__":
    main()
