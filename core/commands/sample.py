"""`python -m core sample ...`: sample a model headless and write .npz or a .png grid.

The .npz holds `samples` (N×…: points, or images in [−1, 1] as N×C×H×W, decoded for latent models),
`labels` where the run used them, `x_T` (the initial noise exactly as the model saw it: latents for latent
models) and, for latent models, `latents` (the final latents). With the same x_T as `latents=`, a diffusers
pipeline gives the same `latents`: this is how anyone can check parity against the reference pipeline.
Both outputs carry the run's settings as the app writes them (`core.pngmeta`, `core.runs`), so the app
opens either: a .png restores the settings and shows the picture; a .npz is a run file, and when the
run is one batch in one process it also holds every step's previews (`--no-trajectory` leaves them out),
so the app replays it step by step.
Sample i always has seed `--seed` + i, so chunking a large `--num-samples` into batches changes nothing,
and under torchrun (one process per GPU; see core/distributed.py) the ranks share the batches and rank 0
writes what one process writes (to float32 rounding: CPU matrix products round by operand alignment).
Finished batches are kept until the output is written, so the same command resumes an interrupted run.
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import compiled, distributed
from ..device import free_memory
from ..images import grid, points_image, to_uint8
from ..infotext import format_infotext
from ..pngmeta import run_metadata, write_png
from ..recording import Recorder
from ..registry import DEFAULT_MODEL, load_model
from ..requests import CLIP_MODES, GUIDANCE_KINDS, SAMPLERS, VARIANCES, Guidance, SamplingRequest
from ..runs import RunResult, write_run
from ..samplers import sample


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="sample a model and write .npz or .png")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="built-in name, bundle or checkpoint file, or diffusers pipeline folder")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim")
    p.add_argument("--steps", default="50", help="step count or respacing spec (50, ddim50, 10,15,20)")
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--guidance", choices=GUIDANCE_KINDS, default="none")
    p.add_argument("--scale", type=float, default=0.0, help="classifier guidance scale s")
    p.add_argument("--weight", type=float, default=0.0, help="classifier-free guidance weight w")
    p.add_argument("--window", default="0,1", help="fraction of the run with guidance: START,END")
    p.add_argument("--label", default=None, help="target class, or a comma list cycled over samples")
    p.add_argument("--prompt", default=None, help="text for prompt models (Stable Diffusion)")
    p.add_argument("--negative-prompt", default="", help="text CFG steers away from (its unconditional pass)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (latent models; multiple of 8)")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (latent models; multiple of 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", "--num", dest="num", type=int, default=16,
                   help="number of samples (write --num-samples under torchrun: it takes --num for its own)")
    p.add_argument("--batch", type=int, default=0,
                   help="samples per forward (0: all at once); under torchrun the ranks share whole batches")
    p.add_argument("--clip", choices=CLIP_MODES, default="auto")
    p.add_argument("--variance", choices=VARIANCES, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, required=True, help="output file: .npz (a run file) or .png")
    p.add_argument("--no-trajectory", action="store_true",
                   help="leave the per-step previews out of the .npz (they are kept when the run is one batch)")
    p.set_defaults(func=run)


def _labels(text: str | None, num: int) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--label must be an integer or a comma list of integers, got {text!r}.") from None
    return tuple(values[i % len(values)] for i in range(num))


def _window(text: str) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--window must be START,END fractions like 0,0.5, got {text!r}.") from None
    return start, end


# Arguments that leave the samples as they are: finished batches are reused whatever these say.
NOT_IN_SAMPLES = ("out", "device", "threads", "no_trajectory")


def run(args) -> int:
    if args.threads < 0:
        raise ValueError("--threads must be 0 (torch's default) or more.")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out.suffix not in (".npz", ".png"):
        raise ValueError(f"--out must end in .npz or .png, got {args.out.name!r}.")
    if args.num < 1:
        raise ValueError("--num-samples must be at least 1.")
    if args.batch < 0:
        raise ValueError("--batch must be 0 (all at once) or more.")
    labels = _labels(args.label, args.num)
    guidance = Guidance(args.guidance, scale=args.scale, weight=args.weight, window=_window(args.window))
    chunk = args.batch or args.num
    base = SamplingRequest(model=str(args.model), sampler=args.sampler, steps=args.steps, eta=args.eta,
                           guidance=guidance, seed=args.seed, batch=min(chunk, args.num), clip=args.clip,
                           variance=args.variance, prompt=args.prompt, negative_prompt=args.negative_prompt,
                           width=args.width, height=args.height)
    check_output(args.out)
    with distributed.joined(args.device) as world:
        bundle = load_model(args.model, world.device, args.precision)
        compiled.attach(bundle)  # the network compiled for this CPU, if `python -m core compile` made it
        check_memory(args.num, min(chunk, args.num), bundle, base)
        if world.is_main and world.size > 1 and chunk >= args.num:
            print(f"note: {args.num} samples make one batch, so one rank does all the work; "
                  "pass --batch to share it", file=sys.stderr)

        # Every step's previews, for a run that is one batch in one process (the app replays it).
        recorders: list[Recorder] = []
        trajectory = args.out.suffix == ".npz" and not args.no_trajectory and world.size == 1 and chunk >= args.num

        def compute(batch: distributed.Batch) -> dict[str, torch.Tensor]:
            part_labels = None if labels is None else labels[batch.first:batch.first + batch.size]
            request = base.replace(seed=args.seed + batch.first, batch=batch.size, label=part_labels)
            recorder = Recorder.for_bundle(request, bundle) if trajectory else None
            recorders.extend([recorder] if recorder is not None else [])
            return sample_arrays(request, bundle, recorder)

        shards = args.out.with_name(f".{args.out.name}.shards")
        store = distributed.ShardStore(shards, distributed.shard_settings(args, NOT_IN_SAMPLES, world.device))
        start = time.perf_counter()
        arrays = distributed.run_batches(world, distributed.split(args.num, chunk), compute, store,
                                         label=f"{bundle.name}: ")
        seconds = time.perf_counter() - start
        if world.is_main:
            request = base.replace(batch=args.num, label=labels[0] if labels and len(set(labels)) == 1 else labels)
            recorder = recorders[0] if recorders else None
            run = RunResult(request, bundle.name, str(world.device), seconds, arrays["samples"].numpy(),
                            tracks=recorder.tracks if recorder is not None else {},
                            num_steps=recorder.num_steps if recorder is not None else 0)
            _write(args.out, arrays, run, bundle.config.is_image)
            print(f"wrote {args.num} samples of {bundle.name} to {args.out} in {seconds:.2f}s "
                  f"({args.num / seconds:.1f} samples/s, {world.size} process{'es' if world.size > 1 else ''})")
        distributed.discard(world, shards)
    return 0


def sample_arrays(request: SamplingRequest, bundle, recorder: Recorder | None = None) -> dict[str, torch.Tensor]:
    """One batch's arrays on the CPU: `samples` (decoded for latent models), `x_T`, and `latents` for
    latent models (the module docstring says what each is); `recorder` records every step, if given."""
    initial = last = None
    for last in sample(request, bundle):
        initial = last.x if initial is None else initial
        if recorder is not None:
            recorder.add(last)
    if recorder is not None:
        recorder.flush()
    out = {"samples": bundle.decode(last.x).float().cpu(), "x_T": initial.float().cpu()}
    if bundle.is_latent:
        out["latents"] = last.x.float().cpu()
    return out


def _write(path: Path, arrays: dict[str, torch.Tensor], run: RunResult, is_image: bool) -> None:
    """The .npz (a run file: `run` and the other arrays) or the .png (with `run`'s settings), atomically
    and with the usual file mode (SaveError, an OSError, if it fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        extra = {name: value.numpy().astype(np.float32) for name, value in arrays.items() if name != "samples"}
        write_run(path, run, extra=extra, cli=True)
    else:
        samples = arrays["samples"]
        picture = grid(to_uint8(samples)) if is_image else points_image(samples.numpy(), run.labels())
        meta = run_metadata(run.model_name, run.request, device=run.device, seconds=run.seconds, cli=True)
        parameters = None
        if is_image and run.request.prompt is not None:  # what other Stable Diffusion tools read
            parameters = format_infotext(run.request, run.model_name, samples.shape[-1], samples.shape[-2])
        write_png(path, picture, meta, parameters)


def check_output(path: Path) -> None:
    """Refuse (ValueError) an output that could not be written, before any sampling: a folder, a folder
    that cannot be made, or one where no file can be created (read-only file system, permissions)."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name ending in .npz or .png.")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # mkdir would say only "File exists"
        raise ValueError(f"Cannot write {path.name} into {path.parent}: {blocker} is a file, not a folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ValueError(f"Cannot write {path.name} into {path.parent}: {exc.strerror or exc}.") from None


GENERATOR_BYTES = 3 * 1024  # one CPU torch.Generator (sample i's noise stream), measured ≈ 2.7 kB
WORK_FACTOR = 8  # a batch's working copies of a sample (x_t, ε, x̂0, the mean, noise) besides the network


def memory_needed(num: int, chunk: int, sample_numel: int, output_numel: int, latent: bool) -> tuple[int, int]:
    """(bytes of the results kept until they are written, bytes one batch needs besides the network)
    for `num` samples in batches of `chunk`: float32 arrays (`samples`, `x_T` and, for latent models,
    `latents`), one noise generator per sample."""
    kept = num * (output_numel + sample_numel * (2 if latent else 1)) * 4
    batch = chunk * (GENERATOR_BYTES + WORK_FACTOR * sample_numel * 4)
    return kept, batch


def check_memory(num: int, chunk: int, bundle, request: SamplingRequest) -> None:
    """Refuse (ValueError) a run that cannot fit in this machine's free memory, before it starts."""
    free = free_memory(torch.device("cpu"))
    if free is None:
        return
    sample_numel = math.prod(bundle.sample_shape(request))
    output_numel = sample_numel
    if bundle.is_latent:  # decoded to RGB at the requested (or the model's) size
        width, height = getattr(bundle, "image_size", None) or (0, 0)
        output_numel = 3 * (request.width or width) * (request.height or height)
    kept, batch = memory_needed(num, chunk, sample_numel, output_numel, bundle.is_latent)
    if kept > free:
        raise ValueError(f"{num} samples take about {_gib(kept)} of memory until they are written, and "
                         f"{_gib(free)} is free: ask for fewer with --num-samples.")
    if kept + batch > free:
        fits = max(1, int((free - kept) / (batch / chunk) / 2))
        raise ValueError(f"A batch of {chunk} samples needs about {_gib(batch)} of memory and {_gib(free - kept)} "
                         f"is free besides the results: pass a smaller --batch (e.g. --batch {fits}).")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GB"
