"""The faint data distribution behind the 2-D views: where the model's samples should land.

`toy-gmm` draws its mixture exactly; models trained on a known toy dataset draw that dataset;
any other 2-D model is sampled once, unguided (50 DDIM steps), which shows what it has learnt.
"""
from __future__ import annotations

import numpy as np

from core import ModelBundle, SamplingRequest, final_sample
from core.data import gmm_dataset, scurve_dataset
from core.images import PALETTE

BACKDROP_POINTS = 2000


def data_backdrop(bundle: ModelBundle, num: int = BACKDROP_POINTS, seed: int = 12345
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """(points (N, 2) float32, colours (N, 3) uint8 by class or None) for a 2-D model."""
    cfg = bundle.config
    if cfg.data_shape != (2,):
        raise ValueError(f"{bundle.name!r} is not a 2-D model; it has no point backdrop.")
    if cfg.architecture == "gmm":
        keys = ("num_components", "radius", "std")
        x, labels, _ = gmm_dataset(num, seed, **{k: cfg.network[k] for k in keys if k in cfg.network})
        return x.numpy(), PALETTE[labels.numpy() % len(PALETTE)]
    if "scurve" in bundle.name and cfg.num_classes in (0, 4):
        x, labels, _ = scurve_dataset(num, seed)
        return x.numpy(), PALETTE[labels.numpy() % len(PALETTE)] if cfg.num_classes else None
    label = None
    if cfg.num_classes and not cfg.null_label:  # a conditional-only model: spread over its classes
        label = tuple(i % cfg.num_classes for i in range(num))
    request = SamplingRequest(model=bundle.name, sampler="ddim", steps="50", batch=num, seed=seed, label=label)
    x = final_sample(request, bundle).x.detach().float().cpu().numpy()
    colors = None if label is None else PALETTE[np.asarray(label) % len(PALETTE)]
    return x, colors
