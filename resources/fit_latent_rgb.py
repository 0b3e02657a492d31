"""Fit the fast latent → RGB preview map of a latent model's VAE, and print it with how well it fits.

    python resources/fit_latent_rgb.py PIPELINE_FOLDER_OR_CHECKPOINT [--images 64] [--device auto]

The app fits this map itself, from each model's own VAE, the first time a run shows a preview
(core/diffusers/preview.py: smooth random colour fields are encoded by the VAE, every latent position is
paired with the mean colour of the pixel block it stands for, and rgb = z·M + b is solved by least squares;
held-out images give R²). So no numbers need shipping per VAE family, and a fine-tuned VAE gets its own.
This script runs the same fit with more images and prints the 4×3 matrix, the bias and R², e.g. to compare
VAEs or to check a model's previews.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import load_model  # noqa: E402
from core.diffusers.preview import fit_latent_rgb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a diffusers pipeline folder or a single-file Stable Diffusion checkpoint")
    parser.add_argument("--images", type=int, default=64, help="colour fields to fit on (half as many more held out)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    try:
        bundle = load_model(args.model, args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not bundle.is_latent:
        print(f"error: {bundle.name} samples pixels; it has no VAE to fit.", file=sys.stderr)
        return 2
    net = bundle.config.network
    fit = fit_latent_rgb(bundle.vae, bundle.vae_scale_factor, net["scaling_factor"], net.get("shift_factor", 0.0),
                         images=args.images)
    print(json.dumps({"model": bundle.name, **fit.to_dict()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
