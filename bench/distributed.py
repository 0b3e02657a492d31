"""Samples per second of `python -m core sample` alone and under torchrun (issue 13's benchmark; prints, exits 0).

CPU: the built-in MNIST model with CFG, one process with one thread, one process with torch's default
threads, and `torchrun --standalone --nproc-per-node 2` (one thread per rank, as torchrun sets it).
The three alternate for `--repeats` rounds and each keeps its best figure, so load from other processes
disturbs them alike; the scaling ratio is 2 ranks ÷ 1 process with one thread (ideal: 2).
CUDA, when present: one GPU in this process (fp32 and fp16, with peak memory), torchrun with one rank per
GPU, and the ratio G GPUs ÷ 1 GPU when the machine has several.
Every figure is the command's own "samples/s" (sampling and gathering; start-up and model loading excluded).

Usage: python bench/distributed.py [--only cpu|cuda] [--repeats R] [--num N] [--batch B] [--steps S]
       [--gpu-num N] [--gpu-batch B] [--gpu-steps S]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from core.cli import main as core_main

ROOT = Path(__file__).resolve().parents[1]
RATE = re.compile(r"\(([\d.]+) samples/s")


def sample_args(num: int, batch: int, steps: str, out: Path) -> list[str]:
    """mnist-cfg with CFG w = 2, labels 0…9 cycled: the eval's workload."""
    return ["sample", "--model", "mnist-cfg", "--guidance", "cfg", "--weight", "2", "--label", "0,1,2,3,4,5,6,7,8,9",
            "--steps", steps, "--num-samples", str(num), "--batch", str(batch), "--out", str(out)]


def launched(argv: list[str], ranks: int = 0) -> float:
    """samples/s of `python -m core ARGV`, or of torchrun with `ranks` ranks on one machine."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks else []
    result = subprocess.run([sys.executable, *launcher, "-m", "core", *argv], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{result.stderr[-2000:]}")
    return float(RATE.search(result.stdout).group(1))


def in_process(argv: list[str]) -> float:
    """samples/s of the command run in this process (so that CUDA peak memory can be read)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        if core_main(argv) != 0:
            raise SystemExit(f"failed: {' '.join(argv)}")
    return float(RATE.search(printed.getvalue()).group(1))


def cpu(args, folder: Path) -> None:
    work = sample_args(args.num, args.batch, args.steps, folder / "cpu.npz")
    runs = {
        "1 process, 1 thread": lambda: launched([*work, "--threads", "1"]),
        f"1 process, {torch.get_num_threads()} threads": lambda: launched(work),
        "torchrun, 2 ranks x 1 thread": lambda: launched(work, ranks=2),
    }
    print(f"CPU ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}): mnist-cfg, CFG, "
          f"{args.num} samples in batches of {args.batch}, {args.steps}; best of {args.repeats}")
    best = dict.fromkeys(runs, 0.0)
    for _ in range(args.repeats):
        for name, run in runs.items():
            best[name] = max(best[name], run())
    for name, rate in best.items():
        print(f"  {name:<32} {rate:8.2f} samples/s")
    one, two = best["1 process, 1 thread"], best["torchrun, 2 ranks x 1 thread"]
    print(f"  scaling 2 ranks / 1 process (1 thread each): {two / one:.2f}x; load average now {os.getloadavg()[0]:.2f}")


def cuda(args, folder: Path) -> None:
    gpus = torch.cuda.device_count()
    name = torch.cuda.get_device_name(0)
    print(f"CUDA: {gpus} x {name}: mnist-cfg, CFG, {args.gpu_num} samples in batches of {args.gpu_batch}, "
          f"{args.gpu_steps}")
    work = sample_args(args.gpu_num, args.gpu_batch, args.gpu_steps, folder / "gpu.npz")
    warm_up = sample_args(args.gpu_batch, args.gpu_batch, args.gpu_steps, folder / "warm.npz")
    in_process([*warm_up, "--device", "cuda"])  # CUDA context, cuDNN's choices
    rates = {}
    for precision in ("fp32", "fp16"):
        torch.cuda.reset_peak_memory_stats()
        rates[precision] = in_process([*work, "--device", "cuda", "--precision", precision])
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"  1 GPU, one process, {precision}: {rates[precision]:8.1f} samples/s, "
              f"peak memory {peak:.2f} GiB ({name})")
    ranks = launched([*work, "--device", "cuda", "--precision", "fp16"], ranks=gpus)
    print(f"  torchrun, {gpus} rank(s), one GPU each, fp16: {ranks:8.1f} samples/s; "
          f"{gpus} GPU(s) / 1 GPU: {ranks / rates['fp16']:.2f}x ({name})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num", type=int, default=40, help="CPU: samples per run")
    parser.add_argument("--batch", type=int, default=10, help="CPU: samples per batch")
    parser.add_argument("--steps", default="ddim10", help="CPU: steps")
    parser.add_argument("--gpu-num", type=int, default=10000, help="CUDA: samples per run")
    parser.add_argument("--gpu-batch", type=int, default=1000, help="CUDA: samples per batch")
    parser.add_argument("--gpu-steps", default="ddim50", help="CUDA: steps (the eval's default)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    with TemporaryDirectory() as tmp:
        if args.only != "cuda":
            cpu(args, Path(tmp))
        if args.only != "cpu":
            if torch.cuda.is_available():
                cuda(args, Path(tmp))
            else:
                print("CUDA: not available here")


if __name__ == "__main__":
    main()
