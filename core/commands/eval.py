"""`python -m core eval`: sweep one guidance value and measure what it does to the samples.

Example (the built-in MNIST model; ~15 min on a 2-core CPU):
  python -m core eval --model mnist-cfg --guidance cfg --values 0,0.5,1,2,4 --num 1000
  python -m core eval --model mnist-cfg --guidance classifier --values 0,1,2,5,10 --num 1000

Every value samples the same `--num` noises with labels i % K (balanced), DDIM 50 steps by default,
then the judge network (clean images only, never used for guidance) gives class probabilities and
penultimate features: FID, IS-style score and k-NN precision/recall against the held-out real set,
and class accuracy = the judge's agreement with the requested label. Prints a table, writes
<out>/<model>-<guidance>.csv and a trade-off plot <out>/<model>-<guidance>.png.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import torch

from resources import MODELS

from .. import metrics
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
    parser.add_argument("--num", type=int, default=1000, help="samples per value (labels i %% K)")
    parser.add_argument("--steps", default="ddim50", help="respacing: 50, ddim50, 10,15,20, …")
    parser.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"))
    parser.add_argument("--eta", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=250, help="samples per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="sample i uses seed + i, the same for every value")
    parser.add_argument("--judge", type=Path, default=DEFAULT_JUDGE, help="judge network file")
    parser.add_argument("--reference", default="mnist:test", help="real images to compare with")
    parser.add_argument("--k", type=int, default=3, help="neighbours for precision/recall")
    parser.add_argument("--device", default="cpu")
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


def generate(bundle, guidance: str, value: float, num: int, labels: list[int], args) -> torch.Tensor:
    """`num` samples (N, C, H, W) on the CPU; sample i has label labels[i] and seed args.seed + i."""
    if guidance == "cfg":
        g = Guidance(kind="cfg", weight=value)
    elif guidance == "classifier":
        g = Guidance(kind="classifier", scale=value)
    else:
        g = Guidance()
    out = []
    for start in range(0, num, args.batch):
        b = min(args.batch, num - start)
        request = SamplingRequest(model=bundle.name, sampler=args.sampler, steps=args.steps, eta=args.eta,
                                  guidance=g, label=tuple(labels[start:start + b]), seed=args.seed + start, batch=b)
        out.append(final_sample(request, bundle).x.cpu())
    return torch.cat(out)


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num < max(2, args.k + 1):
        raise ValueError(f"--num must be at least {max(2, args.k + 1)} for the statistics to exist.")
    values = parse_values(args.values)
    bundle = load_model(args.model, args.device)
    if args.guidance != "classifier":  # its log p(y|x_t) would be computed at every step for nothing
        bundle.classifier = bundle.classifier_config = None
    if bundle.config.num_classes < 1:
        raise ValueError(f"{bundle.name!r} is unconditional; the sweep needs requested labels to score.")
    judge, info = load_network(args.judge, role="judge")
    if len(info.class_names) != bundle.config.num_classes:
        raise ValueError(f"The judge knows {len(info.class_names)} classes, {bundle.name!r} has {bundle.config.num_classes}.")
    real, real_labels, _ = load_dataset(args.reference)
    real_probs, real_feats = judge_outputs(judge, real)
    labels = [i % bundle.config.num_classes for i in range(args.num)]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{bundle.name}-{args.guidance}"
    symbol = {"cfg": "w", "classifier": "s", "none": "-"}[args.guidance]
    print(f"{bundle.name}: {args.guidance} guidance, {args.num} samples per value, {args.sampler} {args.steps}; "
          f"reference {args.reference} ({len(real)} images, judge accuracy on it "
          f"{metrics.class_accuracy(real_probs, real_labels):.4f})")
    print(f"{symbol:>6} {'FID':>8} {'IS':>6} {'prec':>6} {'recall':>6} {'acc':>6} {'min cls':>7} {'seconds':>8}")
    rows = []
    for value in values:
        start = time.perf_counter()
        images = generate(bundle, args.guidance, value, args.num, labels, args)
        seconds = time.perf_counter() - start
        probs, feats = judge_outputs(judge, images)
        precision, recall = metrics.precision_recall(real_feats, feats, k=args.k)
        row = {"value": value, "fid": metrics.fid(real_feats, feats), "is": metrics.inception_score(probs),
               "precision": precision, "recall": recall, "accuracy": metrics.class_accuracy(probs, labels),
               "min_class_share": float(metrics.class_histogram(probs).min()), "seconds": seconds}
        rows.append(row)
        print(f"{value:>6g} {row['fid']:>8.3f} {row['is']:>6.3f} {precision:>6.3f} {recall:>6.3f} "
              f"{row['accuracy']:>6.3f} {row['min_class_share']:>7.3f} {seconds:>8.1f}", flush=True)
        _write_csv(rows, stem.with_suffix(".csv"))
    plot_tradeoff(rows, stem.with_suffix(".png"), title=f"{bundle.name}, {args.guidance} guidance ({symbol})",
                  symbol=symbol)
    print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.png')}")
    return 0


def _write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
