"""`python -m core train diffusion ...`: train a model and write it as a bundle.

Example (the built-in toy-scurve):
  python -m core train diffusion --data scurve --arch mlp --name toy-scurve \
      --out resources/models/toy-scurve.safetensors
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..bundle import ModelBundle, ModelConfig
from ..checkpoints import save_bundle
from ..data import load_dataset
from ..models import build_network
from ..schedule import Schedule
from ..training.diffusion import TrainSettings, train_diffusion


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a built-in style model from data")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    diff = kinds.add_parser("diffusion", help="an ε-prediction diffusion model (label dropout for CFG)")
    diff.add_argument("--data", required=True, help="dataset name (gmm, scurve, …)")
    diff.add_argument("--num-data", type=int, default=50_000, help="samples to draw from a synthetic dataset")
    diff.add_argument("--arch", default="mlp", help="network architecture key (mlp, unet, …)")
    diff.add_argument("--network", default="{}", help="JSON keyword arguments of the network")
    diff.add_argument("--schedule", default="linear", choices=("linear", "cosine"))
    diff.add_argument("--timesteps", type=int, default=1000)
    diff.add_argument("--unconditional", action="store_true", help="ignore the labels")
    diff.add_argument("--attach-classifier", metavar="MODEL",
                      help="copy this model's classifier into the new bundle (e.g. toy-gmm's exact one)")
    diff.add_argument("--description", default="")
    _add_common(diff)
    diff.set_defaults(func=run_diffusion)


def _add_common(parser) -> None:
    parser.add_argument("--name", required=True, help="the model's name in the app")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors bundle")
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--batch", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--ema", type=float, default=TrainSettings.ema_decay)
    parser.add_argument("--label-dropout", type=float, default=TrainSettings.label_dropout)
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def _network_kwargs(text: str) -> dict:
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--network must be a JSON object: {exc}.") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--network must be a JSON object.")
    return kwargs


def run_diffusion(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    x, labels, class_names = load_dataset(args.data, num=args.num_data, seed=args.seed)
    conditional = not args.unconditional
    num_classes = len(class_names) if conditional else 0
    network = _network_kwargs(args.network)
    if args.arch == "mlp":
        network = {"data_dim": x.shape[1], "num_classes": num_classes, **network}
    config = ModelConfig(
        architecture=args.arch, data_shape=tuple(x.shape[1:]), network=network, schedule=args.schedule,
        num_timesteps=args.timesteps, num_classes=num_classes, class_names=class_names if conditional else (),
        null_label=conditional, clip="clip" if x.dim() == 4 else "none", description=args.description,
    )
    settings = TrainSettings(steps=args.steps, batch_size=args.batch, lr=args.lr, ema_decay=args.ema,
                             label_dropout=args.label_dropout if conditional else 0.0, seed=args.seed)
    model = build_network(config.architecture, config.network)
    params = sum(p.numel() for p in model.parameters())
    print(f"training {args.name}: {args.arch}, {params:,} parameters, {len(x)} samples, {settings.steps} steps")
    start = time.perf_counter()
    ema = train_diffusion(model, x, labels if conditional else None, Schedule.from_name(args.schedule, args.timesteps),
                          settings, null_label=num_classes if conditional else None)
    classifier = classifier_config = None
    if args.attach_classifier:
        from ..registry import load_model

        donor = load_model(args.attach_classifier, "cpu")
        classifier, classifier_config = donor.classifier, donor.classifier_config
        if classifier is None:
            raise ValueError(f"{args.attach_classifier!r} has no classifier to attach.")
    bundle = ModelBundle(args.name, config, ema, classifier, classifier_config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(bundle, args.out)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")
    return 0
