"""Scale-out with PyTorch's own launcher, torchrun (DESIGN.md: never a home-made process pool).

`torchrun --nproc-per-node G [--nnodes N --rdzv-endpoint HOST:PORT] -m core sample|eval ...` starts one
process per rank with RANK, WORLD_SIZE and LOCAL_RANK in its environment. `joined(device)` turns those
into a `World`: NCCL between GPUs (one GPU per rank, the LOCAL_RANK-th of its node), gloo on the CPU.
Started without torchrun, a command is the only rank of a world of one and nothing talks to anything.

A command's work is a list of whole batches of sample indices (`split`); sample i keeps seed + i, so a
batch is computed exactly as one process computes it, whichever rank does it, and the union of the
ranks' batches is what one process produces. `run_batches` does the work: every finished batch is a file
in a `ShardStore`, so a restarted command computes only what is missing (with any number of ranks); the
missing batches are dealt to the ranks in turn; rank 0 receives every batch, in index order.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .device import resolve_device
from .registry import model_path

# Ranks wait for rank 0 while it scores a value (eval) or writes the output: allow for long ones.
TIMEOUT = timedelta(hours=1)
PROGRESS_EVERY = 10.0  # seconds between two progress lines of one rank (the last line always prints)


# --- who and where ------------------------------------------------------------------------------

def launch_env(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) as torchrun sets them, or None for a process started alone."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    return int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0))


def rank_device(device: torch.device, local_rank: int, size: int, gpus: int) -> torch.device:
    """This rank's device: a GPU request means the LOCAL_RANK-th GPU of the node (one GPU per rank);
    other devices are used as they are."""
    if device.type != "cuda":
        return device
    if device.index is not None and size > 1:
        raise ValueError(f"Under torchrun each rank takes the GPU of its LOCAL_RANK: use --device cuda, not {device}.")
    index = local_rank if device.index is None else device.index
    if index >= gpus:
        raise ValueError(f"LOCAL_RANK {local_rank} needs GPU {index}, but this node has {gpus}: "
                         f"start at most {gpus} processes per node.")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks. `connected`: in torchrun's process group (even as its
    only rank); otherwise every method is local."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    connected: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def prefix(self) -> str:
        """What this rank's log lines start with (nothing in a world of one)."""
        return "" if self.size == 1 else f"[rank {self.rank}/{self.size}] "

    @property
    def _wire(self) -> torch.device:
        """Where tensors travel from: the GPU under NCCL, the CPU under gloo."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def all_gather(self, obj: object) -> list:
        """Every rank's `obj` (small, picklable), in rank order."""
        if not self.connected:
            return [obj]
        gathered = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def total(self, count: int) -> int:
        """The sum of every rank's `count`."""
        if not self.connected:
            return count
        value = torch.tensor([count], dtype=torch.int64, device=self._wire)
        dist.all_reduce(value)
        return int(value.item())

    def barrier(self) -> None:
        if self.connected:
            dist.barrier()

    def send(self, x: torch.Tensor, to: int) -> None:
        dist.send(x.to(self._wire).contiguous(), to)

    def receive(self, shape: Sequence[int], source: int) -> torch.Tensor:
        """A float32 tensor of `shape` sent by rank `source`, on the CPU."""
        buffer = torch.empty(tuple(shape), dtype=torch.float32, device=self._wire)
        dist.recv(buffer, source)
        return buffer.cpu()


@contextmanager
def joined(device: str = "auto") -> Iterator[World]:
    """The world this process belongs to, for the duration of the block: torchrun's process group
    (joined on entry, left on exit) or, without torchrun, a world of one on `device`."""
    env = launch_env()
    if env is None:
        yield World(device=resolve_device(device))
        return
    rank, size, local_rank = env
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    target = rank_device(resolve_device(device), local_rank, size, gpus)
    if target.type == "cuda":
        torch.cuda.set_device(target)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=target)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        yield World(rank, size, local_rank, target, connected=True)
    finally:
        dist.destroy_process_group()


# --- what: batches and who computes them -------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """Samples first … first + size − 1, computed together as one request; `index` counts batches."""

    index: int
    first: int
    size: int


def split(num: int, batch: int) -> list[Batch]:
    """`num` sample indices in whole batches of `batch` (the last one may be shorter)."""
    return [Batch(j, first, min(batch, num - first)) for j, first in enumerate(range(0, num, batch))]


def assign(num_batches: int, size: int, held: Sequence[Sequence[int]]) -> list[int]:
    """The rank that provides each batch: the first rank that holds it already (`held[r]`: the batch
    indices rank r has on disk), and the batches nobody holds dealt to ranks 0, 1, … in turn, so a
    fresh or resumed run splits the remaining work evenly."""
    holder = [-1] * num_batches
    for rank, indices in enumerate(held):
        for j in indices:
            if holder[j] < 0:
                holder[j] = rank
    missing = [j for j in range(num_batches) if holder[j] < 0]
    for turn, j in enumerate(missing):
        holder[j] = turn % size
    return holder


# --- finished batches on disk ---------------------------------------------------------------------

Arrays = Mapping[str, torch.Tensor]  # one batch's named arrays, the batch's samples along the first dimension


class ShardStore:
    """The finished batches of one setting, one `.safetensors` file each holding the batch's named
    float32 arrays (`samples`, …; first dimension: the batch's samples), in a folder of `root` named
    by a hash of `settings`: a changed setting never reuses old files. Files are written under a
    temporary name and then renamed, so a crash or Ctrl+C leaves only whole ones. Ranks may share the
    folder (one machine, a shared file system) or each have their own."""

    def __init__(self, root: Path, settings: Mapping[str, object]):
        self._settings = json.dumps(settings, sort_keys=True, default=str)
        self.folder = root / hashlib.sha256(self._settings.encode()).hexdigest()[:16]

    def _path(self, batch: Batch) -> Path:
        return self.folder / f"batch-{batch.index:06d}.safetensors"

    def shapes(self, batch: Batch) -> dict[str, tuple[int, ...]] | None:
        """The shape of each array stored for the batch, or None when there is no readable file."""
        try:
            with safe_open(self._path(batch), "pt") as handle:
                names = handle.keys()
                return {name: tuple(handle.get_slice(name).get_shape()) for name in names}
        except (OSError, SafetensorError):
            return None

    def held(self, batches: Sequence[Batch]) -> list[int]:
        """Indices of the `batches` whose file is here and holds the right number of samples."""
        def whole(b: Batch) -> bool:
            shapes = self.shapes(b)
            return bool(shapes) and all(shape[:1] == (b.size,) for shape in shapes.values())

        return [b.index for b in batches if whole(b)]

    def save(self, batch: Batch, arrays: Arrays) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder / "settings.json"
        if not about.exists():  # for a person wondering what the folder is
            _replace_atomically(about, lambda tmp: tmp.write_text(self._settings + "\n"))
        tensors = {key: x.detach().to("cpu", torch.float32).contiguous() for key, x in arrays.items()}
        _replace_atomically(self._path(batch), lambda tmp: _save_tensors(tensors, tmp))

    def load(self, batch: Batch) -> dict[str, torch.Tensor]:
        return load_file(self._path(batch))


def shard_settings(args: Namespace, ignore: Iterable[str], device: torch.device, **extra: object) -> dict:
    """What decides a command's samples, to name its `ShardStore`: every parsed argument but those in
    `ignore` (outputs, devices, thread counts: things that leave the samples as they are), the device
    kind, the model file's path, size and modification time (a retrained file is a new model), and `extra`."""
    settings = {key: value for key, value in vars(args).items() if key not in ignore and not callable(value)}
    path = model_path(args.model)
    if path is not None and path.exists():
        stat = path.stat()
        settings["model_file"] = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    return settings | {"device": device.type} | extra


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors' save_file, its I/O failures (a full disk) as the OSError they are: its own error type
    escaped the commands' one-line report as a traceback."""
    try:
        save_file(tensors, path)
    except SafetensorError as exc:
        found = re.search(r"I/O error: (.*?) \(os error (\d+)\)", str(exc))
        if found is None:
            raise OSError(f"Could not store a finished batch in {path.parent}: {exc}") from None
        error = OSError(f"Could not store a finished batch in {path.parent}: {os.strerror(int(found[2]))}.")
        error.errno = int(found[2])
        raise error from None


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def discard(world: World, root: Path) -> None:
    """Delete the shard folder `root` once rank 0 has written the results (one deleter per node)."""
    world.barrier()
    if world.local_rank == 0:
        shutil.rmtree(root, ignore_errors=True)


# --- running -------------------------------------------------------------------------------------

class Progress:
    """'PREFIX done/total samples (k from disk), rate samples/s, ETA m:ss' on stderr: at most one line
    every `every` seconds, and the last one."""

    def __init__(self, prefix: str, total: int, resumed: int, every: float = PROGRESS_EVERY):
        self.prefix, self.total, self.resumed, self.every = prefix, total, resumed, every
        self._start = time.perf_counter()
        self._last = -math.inf

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if done < self.total and now - self._last < self.every:
            return
        self._last = now
        line = f"{self.prefix}{done}/{self.total} samples"
        if self.resumed:
            line += f" ({self.resumed} from disk)"
        fresh, elapsed = done - self.resumed, now - self._start
        if fresh > 0 and elapsed > 0:
            rate = fresh / elapsed
            line += f", {rate:.1f} samples/s"
            line += f", ETA {_clock((self.total - done) / rate)}" if done < self.total else f", {elapsed:.1f}s"
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def run_batches(world: World, batches: Sequence[Batch], compute: Callable[[Batch], Arrays], store: ShardStore,
                label: str = "") -> dict[str, torch.Tensor] | None:
    """Every batch's arrays, each concatenated over the batches in index order, on rank 0 (None on
    the others).

    `compute(batch)` gives one batch's named arrays (e.g. {"samples": (B, …)}); it runs only for
    batches no rank has in its store, each on one rank. Every rank prints its progress, rank 0 also
    the whole world's; the ranks advance in rounds of one batch each, which also gives rank 0 the
    overall count.
    """
    held = world.all_gather(store.held(batches))
    holder = assign(len(batches), world.size, held)
    stored = {j for indices in held for j in indices}
    todo = [[b for b in batches if holder[b.index] == r and b.index not in stored] for r in range(world.size)]
    mine = todo[world.rank]
    own = sum(b.size for b in batches if holder[b.index] == world.rank)
    done = own - sum(b.size for b in mine)
    progress = Progress(f"{world.prefix}{label}", own, resumed=done)
    overall = None
    if world.is_main and world.size > 1:
        from_disk = sum(b.size for b in batches if b.index in stored)
        overall = Progress(f"[all {world.size} ranks] {label}", sum(b.size for b in batches), resumed=from_disk)
    try:
        if done:
            progress.update(done)
        for turn in range(max(map(len, todo))):
            if turn < len(mine):
                store.save(mine[turn], compute(mine[turn]))
                done += mine[turn].size
                progress.update(done)
            everyone = world.total(done)
            if overall is not None:
                overall.update(everyone)
    except KeyboardInterrupt:
        print(f"{world.prefix}stopped: finished batches stay in {store.folder}; the same command resumes from them",
              file=sys.stderr, flush=True)
        raise
    return _collect(world, batches, holder, store)


def _collect(world: World, batches: Sequence[Batch], holder: Sequence[int],
             store: ShardStore) -> dict[str, torch.Tensor] | None:
    """Rank 0 reads its own batches and receives the others' (each rank sends in index order, its
    arrays in name order)."""
    own = [b for b in batches if holder[b.index] == world.rank]
    shapes = world.all_gather(store.shapes(own[0]) if own else None)
    if not world.is_main:
        for b in own:
            for _, x in sorted(store.load(b).items()):
                world.send(x, to=0)
        return None
    items = next({key: shape[1:] for key, shape in found.items()} for found in shapes if found is not None)
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in items}
    for b in batches:
        if holder[b.index] == 0:
            arrays = store.load(b)
        else:
            arrays = {key: world.receive((b.size, *items[key]), holder[b.index]) for key in sorted(items)}
        for key, x in arrays.items():
            parts[key].append(x)
    return {key: torch.cat(xs) for key, xs in parts.items()}
