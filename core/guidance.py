"""Guidance: what the network predicts at x_t, and the classifier's gradient (DESIGN.md).

Classifier-free guidance is composed around the network call: the conditional and unconditional
passes run as one batched forward of 2B samples, ε̂ = (1+w)·ε_c − w·ε_u; the unguided twin's pass, when
asked for, joins that same forward (or, for a model where that was measured to be slower, each pass
runs as a forward of its own, or on a multi-core CPU slices of the batch run side by side on
single-threaded workers: `_Ways`). The classifier term is sampler-specific (DDPM shifts the mean, DDIM
shifts ε), so this module only supplies the gradient ∇_{x_t} log p_φ(y | x_t, t), evaluated at the
current x_t, and the samplers apply it.
"""
from __future__ import annotations

import contextlib
import itertools
import queue
import statistics
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .bundle import ModelBundle
from .conditioning import CondBatch, concat, take
from .cuda_graphs import GRAPHS
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
    """The bundle's half precision, if any. Without autocast's cache of weight casts: a forward uses each
    weight once, so the cache saves nothing, and a CUDA graph may not record with it."""
    dtype = bundle.autocast_dtype
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=bundle.device.type, dtype=dtype, cache_enabled=False)


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
    """(ε, v) of one forward; v is None unless the model learns sigma. Both float32. The bundle's compiled
    forward runs in the network's place where it has one (`core.compiled`); on CUDA the forward is replayed
    from a CUDA graph where the network allows it (`core.cuda_graphs`)."""
    def forward(x: Tensor, t: Tensor, *y: Tensor) -> tuple[Tensor]:
        with _tuned(bundle), _autocast(bundle):
            return (bundle.model(x, t, *y).float(),)

    compiled = bundle.compiled
    if compiled is not None and compiled.accepts(x, t, y):
        out = compiled(x, t, y)
    elif bundle.device.type == "cuda" and (y is None or isinstance(y, Tensor)):
        inputs = (x, t) if y is None else (x, t, y)
        (out,) = GRAPHS.call(bundle.model, ("forward", bundle.precision), forward, inputs)
    else:
        (out,) = forward(x, t, y)
    if bundle.config.learn_sigma:
        eps, var_frac = out.chunk(2, dim=1)
        return eps, var_frac
    return out, None


def network_outputs(
    bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]
) -> list[tuple[Tensor, Tensor | None]]:
    """(ε, v) of each pass (x_i, y_i), all at timesteps t (B,): from one forward over their concatenation, one
    forward each, or slices of the concatenation forwarded side by side on the CPU's cores, whichever was
    measured to be fastest for this model (`_Ways`)."""
    ways: dict[str, Callable[[], list]] = {"joint": lambda: _joint_outputs(bundle, t, passes)}
    if len(passes) > 1:
        ways["split"] = lambda: [network_output(bundle, x, t, y) for x, y in passes]
    compiled = bundle.compiled is not None
    if _spreadable(bundle, len(passes) * len(t)) and not compiled:  # a compiled forward runs one call at a time
        ways["cores"] = lambda: _cores_outputs(bundle, t, passes)
    key = ("model", bundle.device.type, bundle.precision, tuple(len(x) for x, _ in passes),
           tuple(passes[0][0].shape[1:]), torch.get_num_threads(), compiled)
    return _WAYS.run(bundle, bundle.model, key, ways)


def _by_pass(n: int, eps: Tensor, var_frac: Tensor | None) -> list[tuple[Tensor, Tensor | None]]:
    """The outputs of a forward over n concatenated passes of equal size, cut back into the passes."""
    return list(zip(eps.chunk(n), var_frac.chunk(n) if var_frac is not None else [None] * n))


def _joint_outputs(bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]) -> list:
    if len(passes) == 1:
        ((x, y),) = passes
        return [network_output(bundle, x, t, y)]
    n = len(passes)
    return _by_pass(n, *network_output(
        bundle, torch.cat([x for x, _ in passes]), torch.cat([t] * n), concat(*(y for _, y in passes))))


def _cores_outputs(bundle: ModelBundle, t: Tensor, passes: Sequence[tuple[Tensor, CondBatch]]) -> list:
    """The passes' concatenation cut into one slice per CPU thread, each forwarded on a single-threaded
    worker at the same time (`_CpuWorkers`), and put back together."""
    n = len(passes)
    x, ts = torch.cat([x for x, _ in passes]), torch.cat([t] * n)
    y = concat(*(y for _, y in passes))
    slices = _slices(len(x), torch.get_num_threads())
    outputs = _cpu_workers(len(slices)).map(
        [lambda a=a, b=b: network_output(bundle, x[a:b], ts[a:b], take(y, a, b)) for a, b in slices])
    eps = torch.cat([e for e, _ in outputs])
    var_frac = None if outputs[0][1] is None else torch.cat([v for _, v in outputs])
    return _by_pass(n, eps, var_frac)


def _slices(size: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) of `parts` near-equal slices of a batch of `size` (fewer when the batch is smaller)."""
    parts = max(1, min(parts, size))
    bounds = [size * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def _spreadable(bundle: ModelBundle, batch: int) -> bool:
    """Whether a batch can be spread over the CPU's cores: on the CPU, with more than one torch thread and
    more than one sample. (CUDA and MPS run one stream of kernels; there a batch is never cut.)"""
    return bundle.device.type == "cpu" and torch.get_num_threads() > 1 and batch > 1


class _CpuWorkers:
    """`count` threads that each run torch with ONE intra-op thread, so that slices of a batch are computed
    side by side, one per core.

    The small convolutions of a step parallelise poorly inside each operation (every one of a few hundred
    operations per forward ends in a barrier across the threads, and a core taken by another process
    stalls them all); independent single-threaded forwards have no barriers. torch's thread count is
    per thread once set, but `torch.set_num_threads` also changes the process's default, which is put
    back once the workers have taken theirs. Each job runs in the caller's grad and inference mode.
    """

    def __init__(self, count: int):
        threads = torch.get_num_threads()
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(count)]
        ready = threading.Barrier(count + 1)
        for jobs in self._queues:
            threading.Thread(target=self._serve, args=(jobs, ready), name="guidance-cpu-worker", daemon=True).start()
        ready.wait()
        torch.set_num_threads(threads)

    @staticmethod
    def _serve(jobs: queue.SimpleQueue, ready: threading.Barrier) -> None:
        torch.get_num_threads()  # torch's per-thread setup, done lazily, would reset the count to the default
        torch.set_num_threads(1)
        ready.wait()
        while True:
            fn, future = jobs.get()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller, which raises it
                future.set_exception(exc)

    def map(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        """fns[i]() on worker i (at most `count` of them), all at once; their results in order."""
        if len(fns) > len(self._queues):
            raise ValueError(f"{len(fns)} jobs for {len(self._queues)} workers.")
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def in_mode(fn: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                    return fn()
            return run

        futures = []
        for jobs, fn in zip(self._queues, fns):
            futures.append(Future())
            jobs.put((in_mode(fn), futures[-1]))
        return [future.result() for future in futures]


_WORKERS: dict[int, _CpuWorkers] = {}
_WORKERS_LOCK = threading.Lock()


def _cpu_workers(count: int) -> _CpuWorkers:
    """The process's `count` single-threaded workers, started on first use and kept (idle, they wait)."""
    with _WORKERS_LOCK:
        if count not in _WORKERS:
            _WORKERS[count] = _CpuWorkers(count)
        return _WORKERS[count]


class _Ways:
    """Which of several equivalent ways to compute one thing a step needs is used, per module and key.

    The ways ("joint": one forward over everything, the rule; "split": one forward per pass; "cores":
    slices on single-threaded workers side by side) give the same result up to float rounding. "joint"
    is kept without a measurement for modules without weights (the analytic toys) and where it takes
    under `QUICK_S`: nothing to gain. Otherwise, the first time a key comes up, every way runs once to
    warm up and then `ROUNDS` times, in turn, and another way replaces "joint" for the module's life only
    if its median time beats joint's by `MARGIN` (the fastest such way). Medians, because a run lasts many
    steps: how much a way suffers from other programs on the machine counts (on a busy 2-core CPU one
    forward on 2 threads is typically ten times slower than its best, slices on single-threaded workers
    barely slower). The margin keeps
    runs of the same request in different processes (e.g. torchrun ranks) on the same way unless the
    difference is real. The step that measures returns the result of the way chosen, so every step of a
    run takes the same way.
    """

    QUICK_S = 0.005
    ROUNDS = 3
    MARGIN = 1.15

    def __init__(self) -> None:
        self._chosen: weakref.WeakKeyDictionary[nn.Module, dict[tuple, str]] = weakref.WeakKeyDictionary()

    def run(self, bundle: ModelBundle, module: nn.Module, key: tuple, ways: dict[str, Callable[[], Any]]) -> Any:
        known = self._chosen.setdefault(module, {})
        if key in known:
            return ways[known[key]]()
        joint_s, out = _timed(bundle, ways["joint"])
        if len(ways) == 1 or joint_s < self.QUICK_S or next(module.parameters(), None) is None:
            known[key] = "joint"
            return out
        others = [name for name in ways if name != "joint"]
        for name in others:
            _timed(bundle, ways[name])  # its warm-up
        rounds: dict[str, list[float]] = {name: [] for name in ways}
        outs = {}
        for _ in range(self.ROUNDS):
            for name, way in ways.items():
                seconds, outs[name] = _timed(bundle, way)
                rounds[name].append(seconds)
        typical = {name: statistics.median(times) for name, times in rounds.items()}
        faster = [name for name in others if typical[name] * self.MARGIN < typical["joint"]]
        known[key] = min(faster, key=typical.__getitem__) if faster else "joint"
        return outs[known[key]]

    def choice(self, module: nn.Module | None) -> dict[tuple, str]:
        return dict(self._chosen.get(module, {})) if module is not None else {}


def _timed(bundle: ModelBundle, way: Callable[[], Any]) -> tuple[float, Any]:
    synchronize(bundle.device)
    start = time.perf_counter()
    out = way()
    synchronize(bundle.device)
    return time.perf_counter() - start, out


_WAYS = _Ways()


def batching_choice(bundle: ModelBundle) -> dict[tuple, str]:
    """The way chosen for `bundle`'s network so far: {(device, precision, pass sizes, sample shape, torch
    threads, compiled forward or not): "joint" (one forward over the concatenated passes), "split" (one forward each) or "cores"
    (slices side by side on the CPU's cores)}."""
    return {key[1:]: way for key, way in _WAYS.choice(bundle.model).items()}


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
    ways: dict[str, Callable[[], tuple]] = {"joint": lambda: _classify(bundle, x, t, labels, with_grad)}
    if _spreadable(bundle, len(x)):
        ways["cores"] = lambda: _classify_on_cores(bundle, x, t, labels, with_grad)
    key = ("classifier", bundle.device.type, bundle.precision, (len(x),), tuple(x.shape[1:]),
           torch.get_num_threads(), with_grad)
    return _WAYS.run(bundle, classifier, key, ways)


def _classify(bundle: ModelBundle, x: Tensor, t: Tensor, labels: Tensor, with_grad: bool
              ) -> tuple[Tensor, Tensor | None]:
    """log p(k | x_t) and, when `with_grad`, the target's gradient; on CUDA replayed from a CUDA graph
    (forward and gradient recorded together) where the classifier allows it (`core.cuda_graphs`)."""
    if bundle.device.type == "cuda":
        out = GRAPHS.call(bundle.classifier, ("classify", bundle.precision, with_grad),
                          lambda *a: tuple(v for v in _classify_eager(bundle, *a, with_grad) if v is not None),
                          (x, t, labels))
        return out[0], out[1] if with_grad else None
    return _classify_eager(bundle, x, t, labels, with_grad)


def _classify_eager(bundle: ModelBundle, x: Tensor, t: Tensor, labels: Tensor, with_grad: bool
                    ) -> tuple[Tensor, Tensor | None]:
    classifier = bundle.classifier
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


def _classify_on_cores(bundle: ModelBundle, x: Tensor, t: Tensor, labels: Tensor, with_grad: bool
                       ) -> tuple[Tensor, Tensor | None]:
    """`_classify` on one slice of the batch per CPU thread, side by side (each sample's log p and gradient
    depend on that sample alone)."""
    slices = _slices(len(x), torch.get_num_threads())
    outputs = _cpu_workers(len(slices)).map(
        [lambda a=a, b=b: _classify(bundle, x[a:b], t[a:b], labels[a:b], with_grad) for a, b in slices])
    log_probs = torch.cat([lp for lp, _ in outputs])
    return log_probs, torch.cat([g for _, g in outputs]) if with_grad else None
