"""The faint data distribution behind the 2-D views: where the model's samples should land.

`toy-gmm` draws its mixture exactly, and so does a model guided by a mixture's exact classifier (`toy-gmm-mlp`,
trained on samples of that mixture); models trained on a known toy dataset draw that dataset; any other 2-D
model is sampled once, unguided (50 DDIM steps), which shows what it has learnt. (Sampled, the backdrop of an
MLP took about a second of CPU on a helper thread just as the model's first run started.) A sampled backdrop
stops at the next step once `cancelled` is set: another model was loaded, or the app is closing (a helper thread
still inside torch when the interpreter exits aborts the process).
"""
from __future__ import annotations

import threading

import numpy as np

from core import ModelBundle, SamplingRequest, sample
from core.data import gmm_dataset, scurve_dataset
from core.images import PALETTE

BACKDROP_POINTS = 2000


def data_backdrop(bundle: ModelBundle, num: int = BACKDROP_POINTS, seed: int = 12345,
                  cancelled: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(points (N, 2) float32, colours (N, 3) uint8 by class or None) for a 2-D model; None when `cancelled`
    was set while it was being sampled."""
    cfg = bundle.config
    if cfg.data_shape != (2,):
        raise ValueError(f"{bundle.name!r} is not a 2-D model; it has no point backdrop.")
    mixture = _mixture(bundle)
    if mixture is not None:
        keys = ("num_components", "radius", "std")
        x, labels, _ = gmm_dataset(num, seed, **{k: mixture[k] for k in keys if k in mixture})
        return x.numpy(), PALETTE[labels.numpy() % len(PALETTE)]
    if "scurve" in bundle.name and cfg.num_classes in (0, 4):
        x, labels, _ = scurve_dataset(num, seed)
        return x.numpy(), PALETTE[labels.numpy() % len(PALETTE)] if cfg.num_classes else None
    label = None
    if cfg.num_classes and not cfg.null_label:  # a conditional-only model: spread over its classes
        label = tuple(i % cfg.num_classes for i in range(num))
    request = SamplingRequest(model=bundle.name, sampler="ddim", steps="50", batch=num, seed=seed, label=label)
    for step in sample(request, bundle):
        if cancelled is not None and cancelled.is_set():
            return None
    x = step.x.detach().float().cpu().numpy()
    colors = None if label is None else PALETTE[np.asarray(label) % len(PALETTE)]
    return x, colors


def _mixture(bundle: ModelBundle) -> dict | None:
    """The Gaussian mixture's parameters of the exact mixture model, or of the exact mixture classifier (the one
    `toy-gmm` has: one class per component) that guides a 2-D model with those classes; None otherwise."""
    if bundle.config.architecture == "gmm":
        return bundle.config.network
    classifier = bundle.classifier_config
    if (classifier is not None and classifier.architecture == "gmm-classifier"
            and bundle.config.num_classes in (0, classifier.num_classes)):
        return classifier.network
    return None
