"""Benchmark: a guided-diffusion 64×64 model with its noise-aware classifier (random weights),
25 DDIM steps with classifier guidance, batch 16. Prints time per step and peak memory.

    python bench/checkpoint.py                 # CPU: the narrow config; CUDA: narrow fp32 and full fp16
    python bench/checkpoint.py --config full --device cuda --precision fp16
    python bench/checkpoint.py --config narrow --batch 4 --steps 10

"full" is the published 64x64_diffusion.pt / 64x64_classifier.pt layout (296M + 40M parameters);
"narrow" the same layout at 32 base channels.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Guidance, ModelBundle, SamplingRequest, sample  # noqa: E402
from core.bundle import ClassifierConfig  # noqa: E402
from core.device import resolve_device  # noqa: E402
from core.guided_diffusion import CLASSIFIER_PRESETS, MODEL_PRESETS, parse_flags, unet_network  # noqa: E402
from core.guided_diffusion import classifier_network  # noqa: E402
from core.guided_diffusion.loader import model_config  # noqa: E402
from core.models import build_network  # noqa: E402

NARROW = " --num_channels 32 --num_head_channels 32"


def make_bundle(config: str, device: torch.device, precision: str) -> ModelBundle:
    """The 64×64 model + classifier, full width or narrow, randomly initialised, on `device`."""
    flags = parse_flags(MODEL_PRESETS["64x64_diffusion.pt"] + (NARROW if config == "narrow" else ""))
    network = unet_network(flags)
    clf_network = classifier_network(parse_flags(CLASSIFIER_PRESETS["64x64_classifier.pt"]))
    if config == "narrow":
        clf_network.update(model_channels=32, num_head_channels=32)
    model = build_network("unet", network).eval()
    classifier = build_network("unet-classifier", clf_network).eval()
    cfg = model_config(network, flags, f"bench {config} 64x64")
    return ModelBundle(f"bench-{config}", cfg, model, classifier, ClassifierConfig("unet-classifier", 1000, clf_network),
                       device=device, precision=precision).to(device)


def peak_cpu_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def run(config: str, device: torch.device, precision: str, steps: int, batch: int) -> None:
    bundle = make_bundle(config, device, precision)
    params = sum(p.numel() for p in bundle.model.parameters()) / 1e6
    clf_params = sum(p.numel() for p in bundle.classifier.parameters()) / 1e6
    request = SamplingRequest(model=bundle.name, sampler="ddim", steps=f"ddim{steps}",
                              guidance=Guidance(kind="classifier", scale=1.0), label=207, seed=0, batch=batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    seconds = [step.seconds for step in sample(request, bundle)][1:]
    total = time.perf_counter() - start
    print(f"{config:>6} 64x64 on {device.type} {precision}: model {params:.1f}M + classifier {clf_params:.1f}M params, "
          f"batch {batch}, {len(seconds)} DDIM steps with classifier guidance")
    steady = seconds[1:] or seconds
    print(f"        per step: median {statistics.median(steady) * 1e3:.1f} ms, first {seconds[0] * 1e3:.1f} ms, "
          f"total {total:.2f} s")
    if device.type == "cuda":
        print(f"        peak GPU memory (max_memory_allocated): {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    print(f"        peak process memory (RSS): {peak_cpu_mib():.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--config", choices=("narrow", "full", "auto"), default="auto")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    if args.config != "auto":
        runs = [(args.config, args.precision or ("fp16" if device.type == "cuda" and args.config == "full" else "fp32"))]
    elif device.type == "cuda":
        runs = [("narrow", "fp32"), ("full", "fp16")]
    else:
        runs = [("narrow", "fp32")]
    for config, precision in runs:
        run(config, device, precision, args.steps, args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
