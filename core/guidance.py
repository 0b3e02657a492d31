"""Guidance: what the network predicts at x_t, and the classifier's gradient (DESIGN.md).

Classifier-free guidance is composed around the network call: the conditional and unconditional
passes run as one batched forward of 2B samples, ε̂ = (1+w)·ε_c − w·ε_u. The classifier term is
sampler-specific (DDPM shifts the mean, DDIM shifts ε), so this module only supplies the gradient
∇_{x_t} log p_φ(y | x_t, t), evaluated at the current x_t, and the samplers apply it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from .bundle import ModelBundle
from .conditioning import CondBatch, concat


@dataclass(frozen=True)
class Prediction:
    """The network's output at x_t after classifier-free guidance.

    eps: ε̂, shape of x. var_frac: the `learned_range` output v ∈ [−1, 1] (shape of x) or None.
    cfg_term: w·(ε_c − ε_u), the part of ε̂ that guidance added, or None without CFG.
    """

    eps: Tensor
    var_frac: Tensor | None
    cfg_term: Tensor | None


def _autocast(bundle: ModelBundle) -> contextlib.AbstractContextManager:
    dtype = bundle.autocast_dtype
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=bundle.device.type, dtype=dtype)


def network_output(bundle: ModelBundle, x: Tensor, t: Tensor, y: CondBatch) -> tuple[Tensor, Tensor | None]:
    """(ε, v) of one forward; v is None unless the model learns sigma. Both float32."""
    with _autocast(bundle):
        out = bundle.model(x, t, y)
    out = out.float()
    if bundle.config.learn_sigma:
        eps, var_frac = out.chunk(2, dim=1)
        return eps, var_frac
    return out, None


def predict(
    bundle: ModelBundle,
    x: Tensor,
    t: Tensor,
    labels: CondBatch,
    null_labels: CondBatch = None,
    weight: float = 0.0,
) -> Prediction:
    """ε̂ at x_t for the condition batch `labels`; with `null_labels` and w ≠ 0, classifier-free guided
    in one forward.

    x: (B, …); t: (B,) original timesteps; labels, null_labels: condition batches of B (or None).
    """
    if null_labels is None or weight == 0.0:
        eps, var_frac = network_output(bundle, x, t, labels)
        return Prediction(eps, var_frac, None)
    eps2, var2 = network_output(bundle, torch.cat([x, x]), torch.cat([t, t]), concat(labels, null_labels))
    eps_c, eps_u = eps2.chunk(2)
    cfg_term = weight * (eps_c - eps_u)
    # The variance of a learned-sigma model comes from the conditional branch.
    var_frac = None if var2 is None else var2.chunk(2)[0]
    return Prediction(eps_c + cfg_term, var_frac, cfg_term)


def classifier_log_probs(
    bundle: ModelBundle, x: Tensor, t: Tensor, labels: Tensor, with_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """log p_φ(k | x_t, t) of every class k, (B, K), and ∇_{x_t} log p_φ(y | x_t, t) of the target
    labels y when `with_grad` (else None).

    Gradients are switched on here and only here; the sampling loop itself runs without them.
    """
    classifier = bundle.classifier
    if classifier is None:
        raise ValueError(f"The model {bundle.name!r} has no classifier.")
    if not with_grad:
        with _autocast(bundle):
            logits = classifier(x, t).float()
        return logits.log_softmax(dim=-1), None
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        with _autocast(bundle):
            logits = classifier(x_in, t).float()
        log_probs = logits.log_softmax(dim=-1)
        (grad,) = torch.autograd.grad(log_probs.gather(1, labels[:, None]).sum(), x_in)
    return log_probs.detach(), grad.float()
