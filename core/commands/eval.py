"""`python -m core eval`: sweep one guidance value and measure what it does to the samples.

Example (the built-in MNIST model; ~15 min on a 2-core CPU):
  python -m core eval --model mnist-cfg --guidance cfg --values 0,0.5,1,2,4 --num-samples 1000
  python -m core eval --model mnist-cfg --guidance classifier --values 0,1,2,5,10 --num-samples 1000

Every value samples the same `--num-samples` noises with labels i % K (balanced), DDIM 50 steps by default,
then the judge network (clean images only, never used for guidance) gives class probabilities and
penultimate features: FID, IS-style score and k-NN precision/recall against the held-out real set,
and class accuracy = the judge's agreement with the requested label. Prints a table, writes
<out>/<model>-<guidance>.csv and a trade-off plot <out>/<model>-<guidance>.png.

Under torchrun (README, "Several GPUs and machines") the ranks share each value's batches, rank 0 gathers
them and scores exactly the samples one process would; finished batches are kept until the sweep is done,
so the same command resumes an interrupted sweep.
"""
from __future__ import annotations

import csv
import time
from functools import partial
from pathlib import Path

import torch

from resources import MODELS

from .. import compiled, distributed, metrics
from ..data import load_dataset
from ..netfile import load_network
from ..registry import load_model
from ..requests import Guidance, SamplingRequest
from ..samplers import final_sample
from ..tradeoff_plot import plot_tradeoff

DEFAULT_JUDGE = MODELS / "judge" / "mnist-judge.safetensors"
COLUMNS = ("value", "fid", "is", "precision", "recall", "accuracy", "min_class_share", "seconds")


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="measure FID, IS, precision/recall and accuracy over a guidance sweep")
    parser.add_argument("--model", required=True, help="model name or bundle path")
    parser.add_argument("--guidance", default="cfg", choices=("none", "cfg", "classifier"),
                        help="what the values set: CFG weight w, or classifier scale s")
    parser.add_argument("--values", default="0,0.5,1,2,4", help="comma-separated guidance values")
    parser.add_argument("--num-samples", "--num", dest="num", type=int, default=1000,
                        help="samples per value (labels i %% K); write --num-samples under torchrun")
    parser.add_argument("--steps", default="ddim50", help="respacing: 50, ddim50, 10,15,20, …")
    parser.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"))
    parser.add_argument("--eta", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=250, help="samples per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="sample i uses seed + i, the same for every value")
    parser.add_argument("--judge", type=Path, default=DEFAULT_JUDGE, help="judge network file")
    parser.add_argument("--reference", default="mnist:test", help="real images to compare with")
    parser.add_argument("--k", type=int, default=3, help="neighbours for precision/recall")
    parser.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: the rank's GPU), mps, auto")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="sampling precision (fp16, bf16: CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("eval-results"), help="folder for the CSV and PNG")
    parser.set_defaults(func=run)


def parse_values(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--values must be numbers separated by commas, got {text!r}.") from None
    if not values:
        raise ValueError("--values needs at least one number.")
    return values


@torch.no_grad()
def judge_outputs(judge: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities (N, K), penultimate features (N, D)) of images (N, C, H, W) in [−1, 1]."""
    probs, feats = [], []
    for i in range(0, len(images), batch):
        f = judge.features(images[i:i + batch].float().clamp(-1, 1))
        feats.append(f)
        probs.append(judge.head(f).softmax(dim=1))
    return torch.cat(probs), torch.cat(feats)


def guidance_for(kind: str, value: float) -> Guidance:
    """The guidance a sweep value stands for: CFG weight w, classifier scale s, or none."""
    if kind == "cfg":
        return Guidance(kind="cfg", weight=value)
    if kind == "classifier":
        return Guidance(kind="classifier", scale=value)
    return Guidance()


def generate(bundle, guidance: Guidance, labels: list[int], args, batch: distributed.Batch) -> dict[str, torch.Tensor]:
    """One batch's `samples` (B, C, H, W), float32 on the CPU: sample i has label labels[i] and seed args.seed + i."""
    request = SamplingRequest(model=bundle.name, sampler=args.sampler, steps=args.steps, eta=args.eta,
                              guidance=guidance, label=tuple(labels[batch.first:batch.first + batch.size]),
                              seed=args.seed + batch.first, batch=batch.size)
    return {"samples": final_sample(request, bundle).x.float().cpu()}


def score(judge: torch.nn.Module, real_feats: torch.Tensor, images: torch.Tensor, labels: list[int], k: int) -> dict:
    """The table's columns but value and seconds, for `images` requested with `labels`."""
    probs, feats = judge_outputs(judge, images)
    precision, recall = metrics.precision_recall(real_feats, feats, k=k)
    return {"fid": metrics.fid(real_feats, feats), "is": metrics.inception_score(probs), "precision": precision,
            "recall": recall, "accuracy": metrics.class_accuracy(probs, labels),
            "min_class_share": float(metrics.class_histogram(probs).min())}


# Arguments that leave the samples as they are: finished batches are reused whatever these say.
NOT_IN_SAMPLES = ("out", "device", "threads", "values", "judge", "reference", "k")


def run(args) -> int:
    if args.threads < 0:
        raise ValueError("--threads must be 0 (torch's default) or more.")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num < max(2, args.k + 1):
        raise ValueError(f"--num-samples must be at least {max(2, args.k + 1)} for the statistics to exist.")
    if args.batch < 1:
        raise ValueError("--batch must be at least 1.")
    values = parse_values(args.values)
    with distributed.joined(args.device) as world:
        bundle = load_model(args.model, world.device, args.precision)
        compiled.attach(bundle)  # the network compiled for this CPU, if `python -m core compile` made it
        if bundle.config.num_classes < 1:
            raise ValueError(f"{bundle.name!r} is unconditional; the sweep needs requested labels to score.")
        judge, info = load_network(args.judge, role="judge")
        if len(info.class_names) != bundle.config.num_classes:
            raise ValueError(f"The judge knows {len(info.class_names)} classes, {bundle.name!r} has "
                             f"{bundle.config.num_classes}.")
        labels = [i % bundle.config.num_classes for i in range(args.num)]
        batches = distributed.split(args.num, args.batch)
        stem = args.out / f"{bundle.name}-{args.guidance}"
        shards = stem.with_name(f".{stem.name}.shards")
        symbol = {"cfg": "w", "classifier": "s", "none": "-"}[args.guidance]
        if world.is_main:
            args.out.mkdir(parents=True, exist_ok=True)
            real, real_labels, _ = load_dataset(args.reference)
            real_probs, real_feats = judge_outputs(judge, real)
            print(f"{bundle.name}: {args.guidance} guidance, {args.num} samples per value, {args.sampler} "
                  f"{args.steps}, {world.size} process{'es' if world.size > 1 else ''}; reference {args.reference} "
                  f"({len(real)} images, judge accuracy on it {metrics.class_accuracy(real_probs, real_labels):.4f})")
            print(f"{symbol:>6} {'FID':>8} {'IS':>6} {'prec':>6} {'recall':>6} {'acc':>6} {'min cls':>7} "
                  f"{'seconds':>8}")
        rows = []
        for value in values:
            start = time.perf_counter()
            guidance = guidance_for(args.guidance, value)
            store = distributed.ShardStore(
                shards, distributed.shard_settings(args, NOT_IN_SAMPLES, world.device, value=value))
            arrays = distributed.run_batches(world, batches, partial(generate, bundle, guidance, labels, args),
                                             store, label=f"{symbol}={value:g}: ")
            if not world.is_main:
                continue
            row = {"value": value, **score(judge, real_feats, arrays["samples"], labels, args.k),
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            print(f"{value:>6g} {row['fid']:>8.3f} {row['is']:>6.3f} {row['precision']:>6.3f} {row['recall']:>6.3f} "
                  f"{row['accuracy']:>6.3f} {row['min_class_share']:>7.3f} {row['seconds']:>8.1f}", flush=True)
            _write_csv(rows, stem.with_suffix(".csv"))
        if world.is_main:
            plot_tradeoff(rows, stem.with_suffix(".png"), title=f"{bundle.name}, {args.guidance} guidance ({symbol})",
                          symbol=symbol)
            print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.png')}")
        distributed.discard(world, shards)
    return 0


def _write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
