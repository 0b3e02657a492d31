"""`python -m core sample|eval` under torchrun: ranks share whole batches, rank 0 writes exactly what one
process writes, finished batches survive an interruption, and no option is swallowed by torchrun.

The multi-process tests start the real launcher (`python -m torch.distributed.run` is `torchrun`) with
two CPU ranks (gloo), and compare them with one process using one thread, as torchrun gives each of its
workers: PyTorch's CPU kernels sum in a thread-count-dependent order. The analytic toy mixture must match
bit for bit. A network's samples match to float32 rounding: MKL's matrix products round differently with
the memory alignment of their operands, which differs between processes.
"""
from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributed.run import get_args_parser

import core.commands.sample as sample_command
from core import distributed
from core.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
SINGLE_PROCESS_ONLY = {"--num"}  # ambiguous for torchrun (--numa-binding); --num-samples is the spelling there


def torchrun(*argv: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m core ARGV`, run from the repository root."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "core", *argv]
    result = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*path, name))


def test_torchrun_passes_every_option_through():
    launcher = get_args_parser()
    checked = 0
    for path, parser in _subparsers(build_parser()):
        for option in {s for a in parser._actions for s in a.option_strings} - SINGLE_PROCESS_ONLY:
            for spelling in ([option, "1"], [f"{option}=1"]):
                argv = [*path, *spelling]
                parsed = launcher.parse_args(["--nproc-per-node", "2", "-m", "core", *argv])
                assert parsed.training_script == "core" and parsed.training_script_args == argv
                checked += 1
    assert checked > 100
    with pytest.raises(SystemExit):  # why --num-samples exists
        launcher.parse_args(["-m", "core", "sample", "--num", "5"])


def test_num_is_an_alias_of_num_samples():
    for command in ("sample", "eval"):
        base = [command, "--out", "x.npz", "--model", "toy-gmm"]
        assert build_parser().parse_args([*base, "--num", "7"]).num == 7
        assert build_parser().parse_args([*base, "--num-samples", "7"]).num == 7


def test_batches_are_whole_and_missing_ones_are_dealt_in_turn():
    batches = distributed.split(10, 3)
    assert [(b.index, b.first, b.size) for b in batches] == [(0, 0, 3), (1, 3, 3), (2, 6, 3), (3, 9, 1)]
    assert distributed.assign(5, 2, [[], []]) == [0, 1, 0, 1, 0]
    # batches on disk stay with the first rank that has them; the rest are dealt from rank 0 on
    assert distributed.assign(6, 3, [[4], [1, 4], []]) == [0, 1, 1, 2, 0, 0]


def test_each_rank_takes_the_gpu_of_its_local_rank():
    cpu = torch.device("cpu")
    assert distributed.rank_device(cpu, local_rank=3, size=4, gpus=0) == cpu
    assert distributed.rank_device(torch.device("cuda"), local_rank=1, size=2, gpus=2) == torch.device("cuda", 1)
    assert distributed.rank_device(torch.device("cuda", 1), local_rank=0, size=1, gpus=2) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="use --device cuda, not cuda:1"):
        distributed.rank_device(torch.device("cuda", 1), local_rank=0, size=2, gpus=2)
    with pytest.raises(ValueError, match="LOCAL_RANK 2 needs GPU 2, but this node has 2"):
        distributed.rank_device(torch.device("cuda"), local_rank=2, size=4, gpus=2)
    assert distributed.launch_env({}) is None
    assert distributed.launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)


def test_shards_are_named_by_their_settings_and_checked_before_reuse(tmp_path):
    batches = distributed.split(5, 2)
    store = distributed.ShardStore(tmp_path, {"seed": 0})
    assert distributed.ShardStore(tmp_path, {"seed": 1}).folder != store.folder
    assert distributed.ShardStore(tmp_path, {"seed": 0}).folder == store.folder
    store.save(batches[0], {"samples": torch.arange(4.0).reshape(2, 2), "x_T": torch.ones(2, 3)})
    store.save(batches[1], {"samples": torch.ones(2, 2), "x_T": torch.ones(1, 3)})  # x_T short of a sample
    store.save(batches[2], {"samples": torch.ones(2, 2)})  # batch 2 holds one sample, not two
    (store.folder / "batch-000001.safetensors").write_bytes(b"truncated")
    assert store.held(batches) == [0]
    store.save(batches[1], {"samples": torch.ones(2, 2), "x_T": torch.ones(1, 3)})
    assert store.held(batches) == [0]
    loaded = store.load(batches[0])
    assert loaded.keys() == {"samples", "x_T"} and torch.equal(loaded["samples"], torch.arange(4.0).reshape(2, 2))
    assert sorted(p.name for p in store.folder.iterdir()) == [
        "batch-000000.safetensors", "batch-000001.safetensors", "batch-000002.safetensors", "settings.json"]


def _two_machines(rank: int, init: str, roots: list[Path], result: Path) -> None:
    """One rank of `test_ranks_with_their_own_disks_share_and_gather_named_arrays` (a spawned process)."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    world = distributed.World(rank, 2, local_rank=0, connected=True)
    computed = []

    def compute(batch: distributed.Batch) -> dict[str, torch.Tensor]:
        computed.append(batch.index)
        first = float(batch.first)
        return {"index": torch.arange(first, first + batch.size), "pair": torch.full((batch.size, 2), first)}

    store = distributed.ShardStore(roots[rank], {"run": 1})
    arrays = distributed.run_batches(world, distributed.split(14, 3), compute, store)
    everyone = world.all_gather(computed)
    if world.is_main:
        torch.save({"arrays": arrays, "computed": everyone}, result)
    torch.distributed.destroy_process_group()


def test_ranks_with_their_own_disks_share_and_gather_named_arrays(tmp_path):
    roots = [tmp_path / "machine-a", tmp_path / "machine-b"]
    batches = distributed.split(14, 3)  # sizes 3, 3, 3, 3, 2
    for root, held in zip(roots, ([4], [1, 3])):
        for j in held:  # finished before a crash, on that machine's disk only
            b = batches[j]
            distributed.ShardStore(root, {"run": 1}).save(
                b, {"index": torch.arange(b.first, b.first + b.size) + 0.0, "pair": torch.full((b.size, 2), b.first)})
    torch.multiprocessing.spawn(_two_machines, args=(str(tmp_path / "init"), roots, tmp_path / "result.pt"),
                                nprocs=2)
    result = torch.load(tmp_path / "result.pt")
    assert result["computed"] == [[0], [2]]  # the two missing batches, one per rank; nothing recomputed
    assert torch.equal(result["arrays"]["index"], torch.arange(14.0))
    assert torch.equal(result["arrays"]["pair"][:, 0], torch.tensor([b.first for b in batches for _ in range(b.size)],
                                                                    dtype=torch.float32))


def test_toy_mixture_resumed_on_two_ranks_equals_one_process(tmp_path, monkeypatch, capsys):
    args = ["sample", "--model", "toy-gmm", "--sampler", "ddpm", "--steps", "20", "--guidance", "cfg",
            "--weight", "1", "--label", "0,3,5", "--num-samples", "30", "--batch", "4"]
    reference, out = tmp_path / "one.npz", tmp_path / "two.npz"
    assert main([*args, "--threads", "1", "--out", str(reference)]) == 0

    calls = []
    real_sample = sample_command.sample_arrays

    def interrupted_after_three(request, bundle, *recorder):
        calls.append(request.seed)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_sample(request, bundle, *recorder)

    monkeypatch.setattr(sample_command, "sample_arrays", interrupted_after_three)
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "stopped: finished batches stay in" in err and err.endswith("stopped (Ctrl+C)\n")
    shards = tmp_path / ".two.npz.shards"
    assert not out.exists() and len(list(shards.glob("*/batch-*.safetensors"))) == 3

    # batches 0-2 (12 samples) come from disk; 3, 5, 7 (4 + 4 + 2) go to rank 0 and 4, 6 to rank 1
    result = torchrun(*args, "--out", str(out))
    log = result.stdout + result.stderr
    assert "[rank 0/2] toy-gmm: 22/22 samples (12 from disk)" in log
    assert "[rank 1/2] toy-gmm: 8/8 samples," in log
    assert "[all 2 ranks] toy-gmm: 30/30 samples (12 from disk)" in log
    assert "wrote 30 samples of toy-gmm" in result.stdout and "2 processes" in result.stdout
    one, two = np.load(reference), np.load(out)
    assert np.array_equal(one["samples"], two["samples"]) and np.array_equal(one["labels"], two["labels"])
    assert not shards.exists()


def test_mnist_cfg_samples_on_two_ranks_equal_one_process(tmp_path):
    args = ["sample", "--model", "mnist-cfg", "--steps", "ddim3", "--guidance", "both", "--scale", "1",
            "--weight", "1", "--label", "0,1,2,3,4,5,6,7,8,9", "--num-samples", "7", "--batch", "2"]
    assert main([*args, "--threads", "1", "--out", str(tmp_path / "one.npz")]) == 0
    torchrun(*args, "--out", str(tmp_path / "two.npz"))
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert one["samples"].shape == (7, 1, 32, 32) and np.array_equal(one["labels"], two["labels"])
    flat = one["samples"].reshape(7, -1)
    apart = np.abs(flat[:, None] - flat[None]).max(axis=-1) + np.eye(7)
    assert apart.min() > 0.1  # so that a sample out of its place is far outside the tolerance below
    np.testing.assert_allclose(two["samples"], one["samples"], rtol=0, atol=1e-5)


def test_mnist_cfg_eval_on_two_ranks_gives_the_metrics_of_one_process(tmp_path):
    args = ["eval", "--model", "mnist-cfg", "--guidance", "cfg", "--values", "0,2", "--num-samples", "12",
            "--steps", "ddim3", "--batch", "5"]
    assert main([*args, "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    result = torchrun(*args, "--out", str(tmp_path / "two"))
    assert re.search(r"^\[all 2 ranks\] w=2: 12/12 samples", result.stderr, re.MULTILINE)

    def table(folder: Path) -> list[dict]:
        with open(folder / "mnist-cfg-cfg.csv") as handle:
            return [{k: float(v) for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]

    one, two = table(tmp_path / "one"), table(tmp_path / "two")
    assert len(one) == 2 and [row.keys() for row in one] == [row.keys() for row in two]
    rounded = ("fid", "is")  # to the samples' float32 rounding; the counted metrics exactly

    def counted(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in rounded}

    for a, b in zip(one, two):
        assert counted(a) == counted(b)
        assert all(b[k] == pytest.approx(a[k], rel=1e-4) for k in rounded)
    assert (tmp_path / "two" / "mnist-cfg-cfg.png").is_file()
    assert not list((tmp_path / "two").glob(".*shards"))
