"""`python -m core train diffusion|classifier|judge|attach ...`: train models and write them.

- diffusion: an ε-prediction model, written as a bundle (a snapshot of the EMA weights is saved at
  every log line, so an interrupted run leaves a usable model; the snapshot at step N equals a run
  with --steps N).
- classifier: a noise-aware p(y | x_t, t) (network file; `--into BUNDLE` also stores it in a bundle).
- judge: a clean-image classifier for evaluation only (network file).
- attach: store a classifier network file in an existing bundle.

Examples (the built-in toy-scurve; the MNIST models' exact commands are in their model cards):
  python -m core train diffusion --data scurve --arch mlp --name toy-scurve \
      --out resources/models/toy-scurve.safetensors
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..bundle import ClassifierConfig, ModelBundle, ModelConfig
from ..checkpoints import load_bundle, save_bundle
from ..data import load_dataset
from ..models import build_network
from ..netfile import NET_FORMAT, NetworkInfo, load_network, save_network
from ..schedule import Schedule
from ..training.classifier import ClassifierSettings, accuracy_by_t, train_classifier
from ..training.diffusion import TrainSettings, train_diffusion

# Defaults of the image networks (override any with --network); image size, channels and classes
# come from the data.
UNET_DEFAULTS = {
    "unet": {"model_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2, 2],
             "attention_resolutions": [4], "num_head_channels": 32, "dropout": 0.1},
    "unet-patched": {"patch": 4, "model_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2, 2],
                     "attention_resolutions": [2], "num_head_channels": 32, "dropout": 0.0,
                     "parametrization": "v"},
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a built-in style model from data")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    diff = kinds.add_parser("diffusion", help="an ε-prediction diffusion model (label dropout for CFG)")
    diff.add_argument("--data", required=True, help="dataset name (gmm, scurve, …)")
    diff.add_argument("--num-data", type=int, default=50_000,
                      help="samples to draw from a synthetic dataset; at most this many from a real one")
    diff.add_argument("--arch", default="mlp", help="network architecture key (mlp, unet, unet-patched, …)")
    diff.add_argument("--network", default="{}", help="JSON keyword arguments of the network")
    diff.add_argument("--schedule", default="linear", choices=("linear", "cosine"))
    diff.add_argument("--timesteps", type=int, default=1000)
    diff.add_argument("--unconditional", action="store_true", help="ignore the labels")
    diff.add_argument("--attach-classifier", metavar="MODEL",
                      help="copy this model's classifier (or a classifier network file) into the new bundle")
    diff.add_argument("--init", metavar="BUNDLE", type=Path,
                      help="start from this bundle's (EMA) weights and config instead of a fresh network")
    diff.add_argument("--description", default="")
    _add_common(diff)
    diff.set_defaults(func=run_diffusion)
    _register_classifiers(kinds)
    attach = kinds.add_parser("attach", help="store a classifier network file in a model bundle")
    attach.add_argument("classifier", type=Path, help="classifier network file (from `train classifier`)")
    attach.add_argument("--into", required=True, type=Path, help="the model bundle to update")
    attach.set_defaults(func=run_attach)


def _add_common(parser) -> None:
    parser.add_argument("--name", required=True, help="the model's name in the app")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors bundle")
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--batch", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--ema", type=float, default=TrainSettings.ema_decay)
    parser.add_argument("--label-dropout", type=float, default=TrainSettings.label_dropout)
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--log-every", type=int, default=TrainSettings.log_every,
                        help="log (and save a snapshot) every this many steps")
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
    elif args.arch in UNET_DEFAULTS:
        if x.dim() != 4:
            raise ValueError(f"The {args.arch!r} network is for images; {args.data!r} holds points.")
        # A null label needs one more embedding row: label K means "no label".
        network = {**UNET_DEFAULTS[args.arch], "image_size": x.shape[-1], "in_channels": x.shape[1],
                   "out_channels": x.shape[1], "num_classes": num_classes + 1 if conditional else None, **network}
        if args.arch == "unet-patched":  # its v parametrization must use the model's own ᾱ_t
            network.update(schedule=args.schedule, num_timesteps=args.timesteps)
    config = ModelConfig(
        architecture=args.arch, data_shape=tuple(x.shape[1:]), network=network, schedule=args.schedule,
        num_timesteps=args.timesteps, num_classes=num_classes, class_names=class_names if conditional else (),
        null_label=conditional, clip="clip" if x.dim() == 4 else "none", description=args.description,
    )
    settings = TrainSettings(steps=args.steps, batch_size=args.batch, lr=args.lr, ema_decay=args.ema,
                             label_dropout=args.label_dropout if conditional else 0.0, seed=args.seed,
                             log_every=args.log_every)
    model = build_network(config.architecture, config.network)
    if args.init is not None:  # continue training: same network, its weights as the starting point
        start_from = load_bundle(args.init)
        if start_from.config.network != config.network or start_from.config.architecture != config.architecture:
            raise ValueError(f"{args.init} holds a different network; pass the same --arch and --network.")
        model.load_state_dict(start_from.model.state_dict())
    params = sum(p.numel() for p in model.parameters())
    print(f"training {args.name}: {args.arch}, {params:,} parameters, {len(x)} samples, {settings.steps} steps"
          + (f", starting from {args.init}" if args.init is not None else ""))
    classifier = classifier_config = None
    if args.attach_classifier:
        classifier, classifier_config = _donor_classifier(args.attach_classifier)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(step: int, ema: torch.nn.Module) -> None:
        save_bundle(ModelBundle(args.name, config, ema, classifier, classifier_config), args.out)

    start = time.perf_counter()
    ema = train_diffusion(model, x, labels if conditional else None, Schedule.from_name(args.schedule, args.timesteps),
                          settings, null_label=num_classes if conditional else None, snapshot=save)
    save(settings.steps, ema)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")
    return 0


def _donor_classifier(source: str) -> tuple[torch.nn.Module, ClassifierConfig]:
    """The classifier of a model (name or bundle path) or of a classifier network file."""
    path = Path(source)
    if path.is_file() and _is_network_file(path):
        classifier, info = load_network(path, role="classifier")
        return classifier, ClassifierConfig(info.architecture, len(info.class_names), info.network, info.class_names)
    from ..registry import load_model

    donor = load_model(source, "cpu")
    if donor.classifier is None or donor.classifier_config is None:
        raise ValueError(f"{source!r} has no classifier to attach.")
    return donor.classifier, donor.classifier_config


def _is_network_file(path: Path) -> bool:
    from ..checkpoints import CheckpointError, read_header

    try:
        return read_header(path).metadata.get("format") == NET_FORMAT
    except CheckpointError:  # not a safetensors file at all: let the bundle loader explain
        return False


def _register_classifiers(kinds) -> None:
    for kind, help_text in (("classifier", "a noise-aware classifier p(y | x_t, t) for classifier guidance"),
                            ("judge", "a clean-image classifier used only to evaluate samples")):
        parser = kinds.add_parser(kind, help=help_text)
        parser.add_argument("--data", required=True, help="an image dataset (mnist, folder:PATH)")
        parser.add_argument("--test-data", help="held-out images for the accuracy report (e.g. mnist:test)")
        parser.add_argument("--arch", default="conv-classifier" if kind == "classifier" else "judge")
        parser.add_argument("--network", default="{}", help="JSON keyword arguments of the network")
        parser.add_argument("--weight-decay", type=float, default=ClassifierSettings.weight_decay)
        parser.add_argument("--shift", type=int, default=0 if kind == "classifier" else 2,
                            help="random translation of training images, in pixels")
        if kind == "classifier":
            parser.add_argument("--schedule", default="linear", choices=("linear", "cosine"))
            parser.add_argument("--timesteps", type=int, default=1000)
            parser.add_argument("--into", type=Path, help="also store the classifier in this model bundle")
        else:
            parser.set_defaults(into=None, schedule=None, timesteps=None)
        parser.add_argument("--notes", default="", help="free text stored with the network")
        _add_common(parser)
        parser.set_defaults(func=run_classifier, role=kind, steps=2000, batch=64, lr=1e-3)


def run_classifier(args) -> int:
    """Train a noise-aware classifier or a judge; write it as a network file (and into --into)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    x, labels, class_names = load_dataset(args.data)
    if x.dim() != 4:
        raise ValueError(f"Classifiers here are for images; {args.data!r} holds points.")
    network = {"in_channels": x.shape[1], "num_classes": len(class_names), **_network_kwargs(args.network)}
    noisy = args.role == "classifier"
    settings = ClassifierSettings(steps=args.steps, batch_size=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                                  seed=args.seed, noise=noisy, shift=args.shift, log_every=args.log_every)
    abar = None
    if noisy:
        abar = torch.tensor(Schedule.from_name(args.schedule, args.timesteps).alphas_cumprod, dtype=torch.float32)
    if args.into is not None:  # fail before training, not after
        target = load_bundle(args.into)
        if target.config.num_classes != len(class_names):
            raise ValueError(f"{args.into} has {target.config.num_classes} classes, the data {len(class_names)}.")
    model = build_network(args.arch, network)
    params = sum(p.numel() for p in model.parameters())
    print(f"training {args.name}: {args.arch}, {params:,} parameters, {len(x)} images, {settings.steps} steps")
    start = time.perf_counter()
    model = train_classifier(model, x, labels, settings, abar)
    print(f"trained in {time.perf_counter() - start:.0f}s")
    if args.test_data:
        xt, yt, _ = load_dataset(args.test_data)
        for lo, hi, acc in accuracy_by_t(model, xt, yt, abar, seed=args.seed):
            print(f"held-out accuracy, t in [{lo}, {hi}): {acc:.4f}" if noisy else f"held-out accuracy: {acc:.4f}")
    save_network(model, NetworkInfo(args.name, args.role, args.arch, network, class_names, args.notes), args.out)
    print(f"wrote {args.out}")
    if args.into is not None:
        _attach(args.out, args.into)
    return 0


def run_attach(args) -> int:
    _attach(args.classifier, args.into)
    return 0


def _attach(classifier_file: Path, bundle_file: Path) -> None:
    """Store the classifier of `classifier_file` in the bundle `bundle_file` (rewritten atomically)."""
    classifier, info = load_network(classifier_file, role="classifier")
    target = load_bundle(bundle_file)
    if target.config.num_classes != len(info.class_names):
        raise ValueError(f"{bundle_file} has {target.config.num_classes} classes, the classifier "
                         f"{len(info.class_names)}.")
    target.classifier = classifier
    target.classifier_config = ClassifierConfig(info.architecture, len(info.class_names), info.network, info.class_names)
    save_bundle(target, bundle_file)
    print(f"stored classifier {info.name!r} in {bundle_file}")
