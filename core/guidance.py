"""Guidance: what the network predicts at x_t, and the classifier's gradient (DESIGN.md).

Classifier-free guidance is composed around the network call: the conditional and unconditional
passes run as one batched forward of 2B samples, ε̂ = (1+w)·ε_c − w·ε_u; the unguided twin's pass, when
asked for, joins that same forward (or, for a model where that was measured to be slower, each pass
runs as a forward of its own: `_Batching`). The classifier term is sampler-specific (DDPM shifts the mean, DDIM
shifts ε), so this module only supplies the gradient ∇_{x_t} log p_φ(y | x_t, t), evaluated at the
current x_t, and the samplers apply it.
"""
from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from .bundle import ModelBundle
from .conditioning import CondBatch, concat
from .device import synchronize


@dataclass(frozen=True)
class Prediction:
    """The network's output at x_t after classifier-free guidance.

    eps: ε̂, shape of x. var_frac: the `learned_range` output v ∈ [−1, 1] (shape of x) or None.
    cfg_term: w·(ε_c − ε_u), the part of ε̂ that guidance added, or None without CFG.
    twin: the unguided twin's own prediction at its sample, when `predict` was given one (else None).
    """

    eps: Tensor
    var_frac: Tensor | None
    cfg_term: Tensor | None
    twin: "Prediction | None" = None


def _autocast(bundle: ModelBundle) -> contextlib.AbstractContextManager:
    dtype = bundle.autocast_dtype
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=bundle.device.type, dtype=dtype)


@contextlib.contextmanager
def _tuned(bundle: ModelBundle) -> Iterator[None]:
    """On CUDA, cuDNN times its convolution algorithms once per shape and keeps the fastest (a run's shapes
    are fixed, so each is timed once); the global setting is restored afterwards. Elsewhere nothing."""
    if bundle.device.type != "cuda":
        yield
        return
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark


def network_output(bundle: ModelBundle, x: Tensor, t: Tensor, y: CondBatch) -> tuple[Tensor, Tensor | None]:
    """(ε, v) of one forward; v is None unless the model learns sigma. Both float32."""
    with _tuned(bundle), _autocast(bundle):
        out = bundle.model(x, t, y)
    out = out.float()
    if bundle.config.learn_sigma:
        eps, var_frac = out.chunk(2, dim=1)
        return eps, var_frac
    return out, None


def network_outputs(
    bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]
) -> list[tuple[Tensor, Tensor | None]]:
    """(ε, v) of each pass (x_i, y_i), all at timesteps t (B,): from one forward over their concatenation,
    or one forward each where that was measured to be faster for this model (`_Batching`)."""
    if len(passes) == 1:
        ((x, y),) = passes
        return [network_output(bundle, x, t, y)]
    return _BATCHING.outputs(bundle, t, passes)


def _joint_outputs(bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]) -> list:
    n = len(passes)
    eps, var_frac = network_output(
        bundle, torch.cat([x for x, _ in passes]), torch.cat([t] * n), concat(*(y for _, y in passes)))
    return list(zip(eps.chunk(n), var_frac.chunk(n) if var_frac is not None else [None] * n))


def _split_outputs(bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]) -> list:
    return [network_output(bundle, x, t, y) for x, y in passes]


class _Batching:
    """Whether the passes of a step run as one forward of their concatenation (CFG's 2B, the twin's B more)
    or one forward each, per model, device, precision and pass sizes.

    One forward is the rule, and is kept without a measurement for models without weights (the analytic
    toys) and where it takes under `QUICK_S`: nothing to gain. Otherwise, the first time a combination
    comes up, both ways run `ROUNDS` times, alternating after a warm-up, and separate forwards are kept
    for the model's life only if they beat the one forward by `MARGIN` in every round (on CPUs one
    forward of 2B can cost more than two of B). The two ways agree only to float rounding, so the margin
    keeps runs of the same request in different processes (e.g. torchrun ranks) on the same path unless
    the difference is real. The step that measures returns the outputs of the way it chose, so every
    step takes the same path.
    """

    QUICK_S = 0.005
    ROUNDS = 3
    MARGIN = 1.15

    def __init__(self) -> None:
        self._joint: weakref.WeakKeyDictionary[nn.Module, dict[tuple, bool]] = weakref.WeakKeyDictionary()

    def outputs(self, bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]) -> list:
        key = (bundle.device.type, bundle.precision, tuple(len(x) for x, _ in passes), tuple(passes[0][0].shape[1:]))
        known = self._joint.setdefault(bundle.model, {})
        if key in known:
            return (_joint_outputs if known[key] else _split_outputs)(bundle, t, passes)
        joint_s, out = _timed(bundle, _joint_outputs, t, passes)
        if joint_s < self.QUICK_S or next(bundle.model.parameters(), None) is None:
            known[key] = True
            return out
        _timed(bundle, _split_outputs, t, passes)  # its warm-up
        split_faster = True
        for _ in range(self.ROUNDS):
            joint_s, joint_out = _timed(bundle, _joint_outputs, t, passes)
            split_s, split_out = _timed(bundle, _split_outputs, t, passes)
            split_faster = split_faster and split_s * self.MARGIN < joint_s
        known[key] = not split_faster
        return split_out if split_faster else joint_out

    def choice(self, bundle: ModelBundle) -> dict[tuple, bool]:
        return dict(self._joint.get(bundle.model, {}))


def _timed(bundle: ModelBundle, way, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]) -> tuple[float, list]:
    synchronize(bundle.device)
    start = time.perf_counter()
    out = way(bundle, t, passes)
    synchronize(bundle.device)
    return time.perf_counter() - start, out


_BATCHING = _Batching()


def batching_choice(bundle: ModelBundle) -> dict[tuple, bool]:
    """What was decided for `bundle`'s model so far: {(device, precision, pass sizes, sample shape):
    True for one forward over the concatenated passes, False for one forward each}."""
    return _BATCHING.choice(bundle)


def predict(
    bundle: ModelBundle,
    x: Tensor,
    t: Tensor,
    labels: CondBatch,
    null_labels: CondBatch = None,
    weight: float = 0.0,
    twin: tuple[Tensor, CondBatch] | None = None,
) -> Prediction:
    """ε̂ at x_t for the condition batch `labels`; with `null_labels` and w ≠ 0, classifier-free guided
    in one forward.

    x: (B, …); t: (B,) original timesteps; labels, null_labels: condition batches of B (or None).
    twin: the unguided twin's sample and condition batch (x', y'), evaluated in the same forward;
    its unguided ε and v come back as `Prediction.twin`.
    """
    guided = null_labels is not None and weight != 0.0
    passes = [(x, labels)] + ([(x, null_labels)] if guided else []) + ([twin] if twin is not None else [])
    outputs = network_outputs(bundle, t, passes)
    twin_prediction = Prediction(*outputs.pop(), None) if twin is not None else None
    eps_c, var_frac = outputs[0]  # a learned-sigma model's variance comes from the conditional branch
    if not guided:
        return Prediction(eps_c, var_frac, None, twin_prediction)
    cfg_term = weight * (eps_c - outputs[1][0])
    return Prediction(eps_c + cfg_term, var_frac, cfg_term, twin_prediction)


def classifier_log_probs(
    bundle: ModelBundle, x: Tensor, t: Tensor, labels: Tensor, with_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """log p_φ(k | x_t, t) of every class k, (B, K), and ∇_{x_t} log p_φ(y | x_t, t) of the target
    labels y when `with_grad` (else None).

    Gradients are switched on here and only here; the sampling loop itself runs in inference mode,
    whose tensors cannot enter autograd, so this pass works on copies of x, t and the labels.
    """
    classifier = bundle.classifier
    if classifier is None:
        raise ValueError(f"The model {bundle.name!r} has no classifier.")
    if not with_grad:
        with _tuned(bundle), _autocast(bundle):
            logits = classifier(x, t).float()
        return logits.log_softmax(dim=-1), None
    with torch.inference_mode(False), torch.enable_grad(), _tuned(bundle):
        x_in, t, labels = x.clone().requires_grad_(True), t.clone(), labels.clone()
        with _autocast(bundle):
            logits = classifier(x_in, t).float()
        log_probs = logits.log_softmax(dim=-1)
        (grad,) = torch.autograd.grad(log_probs.gather(1, labels[:, None]).sum(), x_in)
    return log_probs.detach(), grad.float()
