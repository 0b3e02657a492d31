"""CUDA graphs of network passes: chosen only on CUDA for networks that declare themselves fit, trusted only
once a replay reproduced an ordinary call, and any failure falls back to ordinary calls with one log line.
(No GPU here: the recording itself is replaced by a fake with the same interface.)"""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from core import Guidance, SamplingRequest, cuda_graphs, final_sample, guidance as G, load_model
from core.models import build_network


class Safe(nn.Module):
    cuda_graph_safe = True


class Fake:
    """A recording whose replay calls `fn` (optionally wrongly); counts replays."""

    def __init__(self, fn, wrong=False):
        self.fn, self.wrong, self.verified, self.replays = fn, wrong, False, 0

    def replay(self, inputs):
        self.replays += 1
        return tuple(o + 1 if self.wrong else o for o in self.fn(*inputs))


@pytest.fixture
def on_cuda(monkeypatch):
    """Pretend every input is on CUDA; `recordings` collects the fakes made."""
    monkeypatch.setattr(cuda_graphs, "_recordable", lambda module, inputs: cuda_graphs.graph_safe(module))
    made = []

    def record(fn, inputs, wrong=False):
        made.append(Fake(fn, wrong))
        return made[-1], tuple(fn(*inputs))

    monkeypatch.setattr(cuda_graphs, "_record", record)
    return made


def counted():
    calls = []

    def fn(x):
        calls.append(1)
        return (x * 2,)
    return fn, calls


def test_a_recording_is_replayed_once_it_reproduced_an_ordinary_call(on_cuda):
    graphs, module = cuda_graphs.Graphs(), Safe()
    fn, calls = counted()
    x = torch.arange(3.0)
    assert torch.equal(graphs.call(module, ("k",), fn, (x,))[0], x * 2)
    assert len(on_cuda) == 1 and list(graphs.state(module).values()) == ["recorded"]
    assert torch.equal(graphs.call(module, ("k",), fn, (x + 1,))[0], (x + 1) * 2)  # replay + ordinary check
    assert list(graphs.state(module).values()) == ["verified"]
    before = len(calls)
    graphs.call(module, ("k",), fn, (x,))
    assert on_cuda[0].replays == 2 and len(calls) == before + 1  # the fake's replay is the only call
    graphs.call(module, ("k",), fn, (torch.zeros(5),))  # other shapes: a recording of their own
    assert len(on_cuda) == 2 and len(graphs.state(module)) == 2


def test_a_recording_that_disagrees_is_dropped_with_one_log_line(on_cuda, monkeypatch, caplog):
    monkeypatch.setattr(cuda_graphs, "_record",
                        lambda fn, inputs: (on_cuda.append(Fake(fn, wrong=True)) or on_cuda[-1], tuple(fn(*inputs))))
    graphs, module = cuda_graphs.Graphs(), Safe()
    fn, _ = counted()
    x = torch.arange(3.0)
    graphs.call(module, ("k",), fn, (x,))
    with caplog.at_level(logging.WARNING, logger="core.cuda_graphs"):
        out = graphs.call(module, ("k",), fn, (x,))
        assert torch.equal(out[0], x * 2)  # the ordinary result, not the wrong replay
        for _ in range(3):
            assert torch.equal(graphs.call(module, ("k",), fn, (x,))[0], x * 2)
    assert [r.getMessage() for r in caplog.records] == ["CUDA graph of Safe did not reproduce an ordinary call; "
                                                        "it runs without one."]
    assert list(graphs.state(module).values()) == ["ordinary"] and on_cuda[0].replays == 1


def test_a_failed_recording_falls_back_once_and_is_not_retried(on_cuda, monkeypatch, caplog):
    attempts = []

    def broken(fn, inputs):
        attempts.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graphs, "_record", broken)
    graphs, module = cuda_graphs.Graphs(), Safe()
    fn, _ = counted()
    with caplog.at_level(logging.WARNING, logger="core.cuda_graphs"):
        for _ in range(3):
            assert torch.equal(graphs.call(module, ("k",), fn, (torch.ones(2),))[0], torch.full((2,), 2.0))
    assert attempts == [1] and len(caplog.records) == 1
    assert "could not be recorded (RuntimeError: operation not permitted" in caplog.records[0].getMessage()


def test_only_declared_networks_on_cuda_are_recorded_and_few_shapes_are_kept(on_cuda, monkeypatch):
    graphs, fn = cuda_graphs.Graphs(), counted()[0]
    graphs.call(nn.Linear(2, 2), ("k",), fn, (torch.ones(2),))  # not declared fit
    assert on_cuda == []
    assert cuda_graphs.graph_safe(build_network("unet-classifier", dict(
        image_size=8, in_channels=3, model_channels=32, out_channels=2, num_res_blocks=1,
        attention_resolutions=[], channel_mult=[1])))
    module = Safe()
    for n in range(cuda_graphs.PER_MODULE + 2):
        graphs.call(module, ("k",), fn, (torch.ones(n + 1),))
    assert len(graphs.state(module)) == cuda_graphs.PER_MODULE
    monkeypatch.undo()
    assert not cuda_graphs._recordable(module, (torch.ones(2),))  # a CPU tensor is never recorded


def test_cpu_sampling_never_goes_near_the_graphs(monkeypatch):
    def refuse(*_):
        raise AssertionError("CUDA graphs reached from a CPU run")

    monkeypatch.setattr(G.GRAPHS, "call", refuse)
    bundle = load_model("mnist-cfg", "cpu")
    request = SamplingRequest(model=bundle.name, sampler="ddim", steps="ddim2", label=(1, 2), batch=2, seed=0,
                              guidance=Guidance(kind="both", weight=1.0, scale=1.0))
    assert final_sample(request, bundle).x.shape == (2, 1, 32, 32)
