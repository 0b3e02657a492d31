"""The CPU's compiled forwards (core/compiled.py): one real AOTInductor compile of a small patched UNet per
test session (tests/conftest.py), then what uses it, what refuses a library and what happens when compiling
fails."""
from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time

import pytest
import torch

from core import Guidance, SamplingRequest, compiled, final_sample
from core.checkpoints import save_bundle
from core.cli import main
from core.guidance import network_output

from ..compiled_fixtures import require_compiler, small_unet_bundle

small_bundle = small_unet_bundle


@pytest.fixture
def cache(compiled_library, monkeypatch):
    """(cache folder holding small_bundle()'s compiled library, the library's path)."""
    monkeypatch.setenv(compiled.CACHE_ENV, str(compiled_library.parent.parent))
    return compiled_library.parent.parent, compiled_library


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_the_library_reproduces_the_network_at_every_batch_size(cache):
    bundle = small_bundle()
    assert compiled.library_path(bundle) == cache[1] and cache[1].is_file()
    assert not compiled.wanted(bundle)
    assert compiled.attach(bundle) and bundle.compiled.path == cache[1]
    with torch.inference_mode():
        for batch in (1, 5, 16):
            inputs = compiled.example_inputs(bundle, batch)
            eager = bundle.model(*inputs)
            assert eager.abs().max() > 0.1
            assert relative_error(bundle.compiled(*inputs), eager) < 1e-5


def test_a_run_uses_the_compiled_forward_and_gives_the_eager_runs_samples(cache):
    bundle = small_bundle()
    request = SamplingRequest(model=bundle.name, sampler="ddim", steps="ddim10", seed=3, batch=6,
                              guidance=Guidance(kind="cfg", weight=2.0), label=(0, 1, 2, 0, 1, 2))
    eager = final_sample(request, bundle).x
    assert compiled.attach(bundle)
    calls = []
    runner = bundle.compiled.runner
    bundle.compiled.runner = lambda *args: calls.append(len(args[0])) or runner(*args)
    fast = final_sample(request, bundle).x
    # every step: both CFG passes, in one forward or two (the first step times both ways)
    assert set(calls) <= {6, 12} and sum(calls) >= 10 * 12
    assert relative_error(fast, eager) < 1e-4 and not torch.equal(fast, eager)


def test_a_call_that_needs_gradients_runs_eagerly(cache):
    bundle = small_bundle()
    assert compiled.attach(bundle)
    x, t, y = compiled.example_inputs(bundle, 2)
    x.requires_grad_(True)
    assert not bundle.compiled.accepts(x, t, y)
    eps, _ = network_output(bundle, x, t, y)
    eps.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not bundle.compiled.accepts(x.detach(), t.float(), y)  # timesteps not as compiled: eager too


def test_other_weights_or_a_damaged_library_run_eagerly(cache, tmp_path, monkeypatch, caplog):
    other = small_bundle()
    assert compiled.library_path(other) == cache[1]
    with torch.no_grad():
        next(other.model.parameters())[0] += 1.0  # in place, after its digest was taken
    assert compiled.library_path(other) != cache[1]
    assert compiled.wanted(other) and not compiled.attach(other) and other.compiled is None

    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path))
    bundle = small_bundle()
    damaged = compiled.library_path(bundle)
    damaged.parent.mkdir(parents=True)
    shutil.copyfile(cache[1], damaged)
    shutil.copyfile(compiled.checksum_path(cache[1]), compiled.checksum_path(damaged))
    assert compiled.attach(bundle)  # a whole copy is fine
    bundle = small_bundle()
    with open(damaged, "r+b") as fh:
        fh.truncate(damaged.stat().st_size // 2)  # loading this one would end the process with SIGBUS
    with caplog.at_level(logging.WARNING, logger="core.compiled"):
        assert not compiled.attach(bundle)
    assert bundle.compiled is None and "runs eagerly" in caplog.text and "checksum" in caplog.text
    request = SamplingRequest(model=bundle.name, steps="ddim5", batch=2, label=(1, 2))
    assert torch.isfinite(final_sample(request, bundle).x).all()


def test_moving_the_bundle_drops_its_compiled_forward(cache):
    bundle = small_bundle()
    assert compiled.attach(bundle)
    bundle.to("cpu")
    assert bundle.compiled is None


def test_a_failed_compile_is_one_line_and_not_tried_again(tmp_path, monkeypatch, capsys):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Compiler g++ not found\nsecond line")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", no_compiler)
    bundle = small_bundle("my-unet")
    path = save_bundle(bundle, tmp_path / "my-unet.safetensors")
    assert main(["compile", "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Could not compile my-unet: RuntimeError: Compiler g++ not found" in err
    package = compiled.library_path(bundle)
    assert [p.name for p in package.parent.iterdir()] == [compiled.failure_note(package).name]
    assert "g++ not found" in compiled.failure_note(package).read_text()
    assert not compiled.wanted(bundle)


def test_the_command_refuses_networks_it_cannot_compile(capsys):
    assert main(["compile", "--model", "toy-gmm"]) == 2
    assert "cannot be compiled" in capsys.readouterr().err


def test_other_threads_run_while_the_compiled_forward_computes(cache):
    """The GUI thread paints while the sampler's thread is inside a forward: the compiled call lets the
    interpreter lock go (torch's own Python binding of the same library would hold it throughout)."""
    bundle = small_bundle()
    assert compiled.attach(bundle)
    inputs = compiled.example_inputs(bundle, 2048)
    with torch.inference_mode():
        bundle.compiled(*inputs)
        start = time.perf_counter()
        bundle.compiled(*inputs)
        one_forward = time.perf_counter() - start

    def forwards():
        with torch.inference_mode():
            for _ in range(5):
                bundle.compiled(*inputs)

    worker = threading.Thread(target=forwards)
    worker.start()
    ticks = [time.perf_counter()]
    while worker.is_alive():
        time.sleep(0.0005)
        ticks.append(time.perf_counter())
    worker.join()
    longest = max(b - a for a, b in itertools.pairwise(ticks))
    assert one_forward > 0.005 and len(ticks) > 10
    assert longest < 0.7 * one_forward  # a held lock shows as a gap of at least one whole forward


def test_the_2d_mlp_compiles_and_its_runs_keep_their_samples(tmp_path, monkeypatch):
    """The toy 2-D models' MLP compiles too: its forward is then one call that lets the interpreter lock go
    (eager, each of its ~40 operations took the lock back from the GUI thread), with the eager run's samples."""
    from core import ModelBundle, ModelConfig
    from core.models import build_network

    require_compiler()
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path))
    network = {"data_dim": 2, "num_classes": 3, "width": 16, "depth": 1}
    torch.manual_seed(0)
    config = ModelConfig("mlp", (2,), network=network, num_classes=3, null_label=True)
    bundle = ModelBundle("tiny-mlp", config, build_network("mlp", network).eval())
    assert compiled.wanted(bundle)
    compiled.compile_network(bundle)
    request = SamplingRequest(model="tiny-mlp", sampler="ddpm", steps="20", seed=1, batch=300,
                              guidance=Guidance(kind="cfg", weight=3.0), label=1)
    eager = final_sample(request, bundle).x
    assert compiled.attach(bundle)
    with torch.inference_mode():
        for batch in (1, 7, 600):
            inputs = compiled.example_inputs(bundle, batch)
            assert relative_error(bundle.compiled(*inputs), bundle.model(*inputs)) < 1e-5
    fast = final_sample(request, bundle).x
    assert relative_error(fast, eager) < 1e-4
