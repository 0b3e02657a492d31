"""`python -m core convert MODEL.pt [--classifier C.pt] [--flags "..."] [--image-size N] --out X.safetensors`:
turn a guided-diffusion checkpoint (and its classifier) into one pickle-free bundle that
`load_model(path)` opens directly."""
from __future__ import annotations

from pathlib import Path

from ..checkpoints import save_bundle


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert a guided-diffusion checkpoint to a .safetensors bundle")
    parser.add_argument("model", help="the diffusion checkpoint (.pt, or .safetensors)")
    parser.add_argument("--classifier", help="its noise-aware classifier checkpoint")
    parser.add_argument("--flags", default="", help="guided-diffusion flags, as its README gives them")
    parser.add_argument("--image-size", type=int, help="the image size, when the weights cannot tell it")
    parser.add_argument("--name", help="the bundle's display name (default: the model file's name)")
    parser.add_argument("--out", required=True, help="where to write the .safetensors bundle")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..guided_diffusion import load_checkpoint

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"The output must be a .safetensors file, not {out.name!r}.")
    if not out.parent.is_dir():
        raise ValueError(f"The folder {out.parent} does not exist.")
    bundle = load_checkpoint(args.model, args.classifier, flags=args.flags, image_size=args.image_size,
                             device="cpu")
    if args.name:
        bundle.name = args.name
    save_bundle(bundle, out)
    cfg = bundle.config
    shape = "×".join(map(str, cfg.data_shape))
    extra = ", with classifier" if bundle.classifier is not None else ""
    print(f"wrote {out}: {bundle.name}, {shape}, {cfg.num_classes or 'no'} classes, "
          f"{cfg.schedule} schedule, {cfg.num_timesteps} steps{extra}")
    return 0
