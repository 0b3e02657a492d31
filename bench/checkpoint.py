"""Benchmark: guided-diffusion's 64×64 model with its noise-aware classifier (random weights), our sampler
alone or beside guided-diffusion's own sampling loop on the same weights and noise.

    python bench/checkpoint.py                                  # our figures (as before)
    python bench/checkpoint.py --reference ~/src/guided-diffusion    # the ratios beside the reference
    python bench/checkpoint.py --config full --device cuda --precision fp16

Our figures: 25 DDIM steps with classifier guidance; CPU: the narrow config; CUDA: narrow fp32 and full fp16.

--reference PATH: a local checkout of openai/guided-diffusion (yours; nothing is downloaded or kept). Only
its `guided_diffusion` package is imported (script_util, unet, gaussian_diffusion, respace: none of these
needs mpi4py or blobfile). Both sides get the same random weights (our state dict loaded into its
networks), the same labels, x_T and per-step noise (its `th.randn_like` draws are replaced by ours), and
the final samples are compared. Three cases, each timed as a whole run, sides alternated, best of
--repeats: DDIM ddim25 with classifier guidance s = 3; DDPM "25" with learned_range variance, s = 3;
DDIM ddim25 unguided with the classifier loaded. Printed per case: ours ÷ guided-diffusion's loop and
ours ÷ the bare network passes (the forwards, and classifier gradients, that the run needs, made by
`core.guidance` alone: what the engine adds). CPU: the narrow config, batch 4, 1 thread (--threads);
CUDA: the narrow and the full published config, batch 16, in fp16 on both sides (theirs: convert_to_fp16;
ours: autocast, passes replayed from CUDA graphs), with seconds per step, peak memory and which CUDA
graphs were recorded. A case or config that fails prints its error and the others still run.

"full" is the published 64x64_diffusion.pt / 64x64_classifier.pt layout (296M + 40M parameters);
"narrow" the same layout at 32 base channels (the classifier with attention at 32,8 only, where its
width is a multiple of the 64 channels per head that guided-diffusion's classifier fixes).
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import resource
import statistics
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    import safetensors  # noqa: F401
except ModuleNotFoundError:  # a bare machine with torch and numpy only: this bench opens no model files
    safetensors = types.ModuleType("safetensors")
    safetensors.SafetensorError = OSError
    safetensors.safe_open = None
    safetensors.torch = types.ModuleType("safetensors.torch")
    safetensors.torch.load_file = safetensors.torch.save_file = None
    sys.modules.update({"safetensors": safetensors, "safetensors.torch": safetensors.torch})

from core import (  # noqa: E402
    Guidance,
    ModelBundle,
    SamplingRequest,
    guidance as G,
    sample,
)
from core.bundle import ClassifierConfig  # noqa: E402
from core.cuda_graphs import GRAPHS  # noqa: E402
from core.device import resolve_device  # noqa: E402
from core.guided_diffusion import (  # noqa: E402
    CLASSIFIER_PRESETS,
    MODEL_PRESETS,
    Flags,
    classifier_network,
    parse_flags,
    unet_network,
)
from core.guided_diffusion.loader import model_config  # noqa: E402
from core.models import build_network  # noqa: E402
from core.noise import NoiseStream  # noqa: E402

# 32 base channels; the classifier's attention where its width is a multiple of 64 (guided-diffusion's
# classifier fixes 64 channels per head): 32,8 for widths 64 and 128.
NARROW = {"model": " --num_channels 32 --num_head_channels 32",
          "classifier": " --classifier_width 32 --classifier_attention_resolutions 32,8"}
LABELS = (207, 360, 387, 974, 88, 979, 417, 279)


def config_flags(config: str) -> tuple[Flags, Flags]:
    """The model's and the classifier's flags of the full or narrow 64×64 config."""
    model = MODEL_PRESETS["64x64_diffusion.pt"] + (NARROW["model"] if config == "narrow" else "")
    classifier = CLASSIFIER_PRESETS["64x64_classifier.pt"] + (NARROW["classifier"] if config == "narrow" else "")
    return parse_flags(model), parse_flags(classifier)


def make_bundle(config: str, device: torch.device, precision: str, seed: int = 0) -> ModelBundle:
    """The 64×64 model + classifier, full width or narrow, with random weights (N(0, 0.05²): the
    zero-initialised output layers of a fresh network would hide most of the work), on `device`."""
    flags, clf_flags = config_flags(config)
    network, clf_network = unet_network(flags), classifier_network(clf_flags)
    model = build_network("unet", network).eval()
    classifier = build_network("unet-classifier", clf_network).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*model.parameters(), *classifier.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    cfg = model_config(network, flags, f"bench {config} 64x64")
    clf_config = ClassifierConfig("unet-classifier", 1000, clf_network)
    return ModelBundle(f"bench-{config}", cfg, model, classifier, clf_config, device=device,
                       precision=precision).to(device)


def peak_cpu_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- our figures alone ------------------------------------------------------------------------------

def run_ours_alone(config: str, device: torch.device, precision: str, steps: int, batch: int) -> None:
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
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"        peak GPU memory (max_memory_allocated): {peak:.0f} MiB")
    print(f"        peak process memory (RSS): {peak_cpu_mib():.0f} MiB")


# --- beside guided-diffusion ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    sampler: str  # ddim or ddpm
    steps: str  # the respacing spec both sides use
    scale: float  # classifier scale; 0: unguided (the classifier stays loaded)


def cases(steps: int) -> tuple[Case, ...]:
    """The issue's three cases at `steps` steps (25 in its table)."""
    return (
        Case(f"DDIM ddim{steps}, classifier s=3", "ddim", f"ddim{steps}", 3.0),
        Case(f'DDPM "{steps}" learned_range, s=3', "ddpm", str(steps), 3.0),
        Case(f"DDIM ddim{steps}, unguided, classifier loaded", "ddim", f"ddim{steps}", 0.0),
    )


def import_reference(path: Path) -> Any:
    """guided-diffusion's script_util from the checkout at `path` (its package only, nothing else)."""
    if not (path / "guided_diffusion" / "script_util.py").is_file():
        raise SystemExit(f"{path} is not a checkout of openai/guided-diffusion (no guided_diffusion/script_util.py).")
    sys.path.insert(0, str(path))
    from guided_diffusion import script_util

    return script_util


@contextlib.contextmanager
def randn_like_from(draws: list[torch.Tensor]):
    """Within the block, torch.randn_like (the reference's per-step noise) returns `draws` in order."""
    queue = iter(draws)
    original = torch.randn_like

    def next_draw(x: torch.Tensor, **_: Any) -> torch.Tensor:
        return next(queue).to(device=x.device, dtype=x.dtype)

    torch.randn_like = next_draw
    try:
        yield
    finally:
        torch.randn_like = original


def _arguments(function: Callable[..., Any], flags: Flags) -> dict[str, Any]:
    """The keyword arguments of one of guided-diffusion's factories that our flags hold, by name."""
    names = inspect.signature(function).parameters
    return {name: getattr(flags, name) for name in names if name in Flags.__dataclass_fields__ and name != "given"}


class Reference:
    """guided-diffusion's networks with our bundle's weights, and its sampling loop for each Case."""

    def __init__(self, script_util: Any, bundle: ModelBundle, flags: Flags, clf_flags: Flags, fp16: bool):
        self.su, self.bundle, self.fp16 = script_util, bundle, fp16
        self.flags = flags
        model = script_util.create_model(**_arguments(script_util.create_model, flags), use_fp16=fp16)
        classifier = script_util.create_classifier(**_arguments(script_util.create_classifier, clf_flags),
                                                   classifier_use_fp16=fp16)
        model.load_state_dict(bundle.model.state_dict())
        classifier.load_state_dict(bundle.classifier.state_dict())
        self.model, self.classifier = model.to(bundle.device).eval(), classifier.to(bundle.device).eval()
        if fp16:
            self.model.convert_to_fp16()
            self.classifier.convert_to_fp16()
        self._diffusions: dict[str, Any] = {}

    def diffusion(self, steps: str) -> Any:
        """Its respaced diffusion for the spec `steps` (e.g. "ddim25"), as create_model_and_diffusion makes it."""
        if steps not in self._diffusions:
            f = self.flags
            self._diffusions[steps] = self.su.create_gaussian_diffusion(
                steps=f.diffusion_steps, learn_sigma=f.learn_sigma, noise_schedule=f.noise_schedule,
                predict_xstart=f.predict_xstart, rescale_timesteps=f.rescale_timesteps, timestep_respacing=steps)
        return self._diffusions[steps]

    def run(self, case: Case, x_T: torch.Tensor, draws: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """guided-diffusion's loop as classifier_sample.py drives it (model_fn, cond_fn)."""
        import torch.nn.functional as F

        classifier, scale = self.classifier, case.scale

        def cond_fn(x, t, y=None):
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
                selected = log_probs[range(len(log_probs)), y.view(-1)]
                return torch.autograd.grad(selected.sum(), x_in)[0] * scale

        diffusion = self.diffusion(case.steps)
        loop = diffusion.ddim_sample_loop if case.sampler == "ddim" else diffusion.p_sample_loop
        with randn_like_from(draws):
            return loop(self.model, tuple(x_T.shape), noise=x_T, clip_denoised=True, model_kwargs={"y": y},
                        cond_fn=cond_fn if scale else None, device=x_T.device, progress=False)


def our_request(case: Case, bundle: ModelBundle, batch: int) -> SamplingRequest:
    guidance = Guidance(kind="classifier", scale=case.scale) if case.scale else Guidance()
    labels = tuple(LABELS[i % len(LABELS)] for i in range(batch))
    return SamplingRequest(model=bundle.name, sampler=case.sampler, steps=case.steps, guidance=guidance,
                           label=labels, seed=0, batch=batch)  # DDPM: the config's learned_range variance


def run_ours(request: SamplingRequest, bundle: ModelBundle) -> torch.Tensor:
    last = None
    for last in sample(request, bundle):
        pass
    return last.x


@torch.inference_mode()
def bare_passes(bundle: ModelBundle, case: Case, x: torch.Tensor, timesteps: list[int], y: torch.Tensor) -> None:
    """The network passes a run of `case` makes, through `core.guidance` alone, at a fixed x."""
    for step in timesteps:
        t = torch.full((len(x),), step, dtype=torch.long, device=x.device)
        G.predict(bundle, x, t, y)
        if case.scale:
            G.classifier_log_probs(bundle, x, t, y, True)
    synchronize(x.device)


def best_of(sides: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Best wall time of each side, the sides run in turn `repeats` times (load hits them alike)."""
    best = dict.fromkeys(sides, float("inf"))
    for _ in range(repeats):
        for name, fn in sides.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def peak_gpu_mib(fn: Callable[[], Any], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def compare(config: str, device: torch.device, precision: str, batch: int, steps: int, repeats: int,
            script_util: Any) -> None:
    """Both sides on the same weights, x_T and noise; the issue's table for this config."""
    bundle = make_bundle(config, device, precision)
    flags, clf_flags = config_flags(config)
    reference = Reference(script_util, bundle, flags, clf_flags, fp16=precision == "fp16")
    shape = (3, flags.image_size, flags.image_size)
    params = sum(p.numel() for p in bundle.model.parameters()) / 1e6
    clf_params = sum(p.numel() for p in bundle.classifier.parameters()) / 1e6
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{config} 64x64 ({params:.1f}M + classifier {clf_params:.1f}M parameters), {precision}, batch {batch}, "
          f"on {name}; best of {repeats}, sides alternated", flush=True)
    print(f"{'case':<42} {'ours s':>8} {'ref s':>8} {'bare s':>8} {'ours/ref':>9} {'ours/bare':>10} {'max |Δx|':>9}"
          + (f" {'s/step ours':>11} {'ref':>7} {'MiB ours':>9} {'ref':>6}" if device.type == "cuda" else ""))
    for case in cases(steps):
        try:
            print(compare_case(case, bundle, reference, shape, batch, repeats), flush=True)
        except Exception as exc:  # noqa: BLE001 — one case failing must not lose the others' figures
            print(f"{case.name:<42} failed: {type(exc).__name__}: {exc}", flush=True)
    if device.type == "cuda":
        for what, module in (("model", bundle.model), ("classifier", bundle.classifier)):
            states = sorted(GRAPHS.state(module).values())
            print(f"CUDA graphs of our {what}: {', '.join(states) or 'none'}", flush=True)


def compare_case(case: Case, bundle: ModelBundle, reference: Reference, shape: tuple[int, ...], batch: int,
                 repeats: int) -> str:
    """One row of the table: both sides on the same x_T and noise, timed alternately."""
    device = bundle.device
    request = our_request(case, bundle, batch)
    y = torch.tensor(request.labels(), device=device)
    n = bundle.sampling_schedule(case.steps).num_steps
    noise = NoiseStream(request.seed, batch, shape, n, device)
    x_T = noise.initial()
    draws = [noise.step() for _ in range(n)]
    timesteps = [bundle.sampling_schedule(case.steps).coefficients(i).timestep for i in reversed(range(n))]
    sides = {
        "ours": lambda: run_ours(request, bundle),
        "ref": lambda: reference.run(case, x_T, draws, y),
        "bare": lambda: bare_passes(bundle, case, x_T, timesteps, y),
    }
    ours_x, ref_x = sides["ours"](), sides["ref"]()  # warm-up, and the samples to compare
    times = best_of(sides, repeats, device)
    diff = (ours_x.float() - ref_x.float()).abs().max().item()
    line = (f"{case.name:<42} {times['ours']:>8.2f} {times['ref']:>8.2f} {times['bare']:>8.2f} "
            f"{times['ours'] / times['ref']:>9.3f} {times['ours'] / times['bare']:>10.3f} {diff:>9.1e}")
    if device.type == "cuda":
        mem_ours, mem_ref = peak_gpu_mib(sides["ours"], device), peak_gpu_mib(sides["ref"], device)
        line += f" {times['ours'] / n:>11.4f} {times['ref'] / n:>7.4f} {mem_ours:>9.0f} {mem_ref:>6.0f}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--config", choices=("narrow", "full", "auto"), default="auto")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None)
    parser.add_argument("--steps", type=int, default=25, help="steps of every run (the issue's table: 25)")
    parser.add_argument("--batch", type=int, default=None, help="default: 16 alone; 4 (CPU) or 16 (CUDA) beside")
    parser.add_argument("--reference", type=Path, default=None, help="a local checkout of openai/guided-diffusion")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (beside the reference on CPU: 1)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    threads = args.threads or (1 if args.reference is not None and device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
          + f", load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.config != "auto":
        default = "fp16" if device.type == "cuda" and args.config == "full" else "fp32"
        runs = [(args.config, args.precision or default)]
    elif device.type == "cuda" and args.reference is not None:
        runs = [("narrow", "fp16"), ("full", "fp16")]  # the issue's CUDA goal: fp16 on both sides
    elif device.type == "cuda":
        runs = [("narrow", "fp32"), ("full", "fp16")]
    else:
        runs = [("narrow", "fp32")]
    if args.reference is None:
        for config, precision in runs:
            run_ours_alone(config, device, precision, args.steps, args.batch or 16)
        return 0
    if any(precision == "bf16" for _, precision in runs):
        raise SystemExit("guided-diffusion runs in fp32 or fp16 only; choose one of those.")
    script_util = import_reference(args.reference.expanduser().resolve())
    batch = args.batch or (16 if device.type == "cuda" else 4)
    for config, precision in runs:
        try:
            compare(config, device, precision, batch, args.steps, args.repeats, script_util)
        except Exception as exc:  # noqa: BLE001 — e.g. out of memory for the full config: the rest still runs
            print(f"{config} {precision}: failed: {type(exc).__name__}: {exc}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
