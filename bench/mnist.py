"""Sampling speed of the built-in MNIST model on this machine (issue 5's benchmark; prints, exits 0).

16 digits (labels 0…9, 0…5), 50 DDIM steps, on the CPU, for: no guidance, CFG (w = 2: one batched
forward of 32), classifier guidance (s = 2: the classifier's gradient at every step) and both.
Each figure is the median of `--repeats` runs after one warm-up run, with the CPU time the process used
per run (÷ wall time: the cores it kept busy) and the way the engine runs the passes of a step
(core.guidance.batching_choice: joint, split, or cores = slices side by side on single-threaded workers);
the CPU load at the start is printed because the figures scale with it. Every setting runs twice: with the
network as PyTorch runs it ("eager") and with its forward compiled for this CPU (core/compiled.py; the
package is made first if it is not in the cache, and the time that took is printed).
Usage: python bench/mnist.py [--threads N] [--repeats R]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from core import Guidance, SamplingRequest, compiled, final_sample, load_model
from core.guidance import batching_choice

SETTINGS = {
    "none": Guidance(),
    "cfg w=2": Guidance(kind="cfg", weight=2.0),
    "classifier s=2": Guidance(kind="classifier", scale=2.0),
    "both w=2 s=2": Guidance(kind="both", weight=2.0, scale=2.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mnist-cfg")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_model(args.model, "cpu")
    params = sum(p.numel() for p in bundle.model.parameters())
    print(f"{bundle.name}: {params:,} parameters; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if not compiled.library_path(bundle).is_file():
        start = time.perf_counter()
        compiled.compile_network(bundle)
        print(f"compiled the network for this CPU in {time.perf_counter() - start:.1f} s (once; kept in "
              f"{compiled.cache_dir()})", flush=True)
    labels = tuple(i % 10 for i in range(16))
    for name, guidance in SETTINGS.items():
        request = SamplingRequest(model=bundle.name, sampler="ddim", steps="ddim50", guidance=guidance,
                                  label=labels, seed=0, batch=16)
        for mode in ("eager", "compiled"):
            bundle.compiled = None
            if mode == "compiled" and not compiled.attach(bundle):
                raise SystemExit("the compiled package does not reproduce the network")
            final_sample(request, bundle)  # warm-up
            times, cpu = [], []
            for _ in range(args.repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                final_sample(request, bundle)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            ways = "/".join(sorted(set(batching_choice(bundle).values())))
            print(f"16 digits, 50 DDIM steps, {name:<15} {mode:<8} median {statistics.median(times):6.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f}), CPU {statistics.median(cpu):.2f} s; "
                  f"ways so far: {ways}", flush=True)

if __name__ == "__main__":
    main()
