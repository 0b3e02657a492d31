"""The fuzz suite's engine: seeded mutations of real files and records, and the oracle every case must pass.

Used by tests/core/test_fuzz_files.py, tests/app/test_fuzz_app.py (bounded case counts, ~60 s in all) and
bench/fuzz.py (many more cases, a report). A case is one mutated input given to one entry point; it
passes when the entry point either accepts the input or refuses it with a ValueError whose message is
one readable line — never another exception, never a crash — and when no file was changed, created or
left behind by the attempt.

Mutations:
- bytes: bit flips, truncation, a random span overwritten, bytes inserted;
- JSON (a record inside a file or a row): one value replaced by a hostile one (huge or negative numbers,
  NaN and infinities, wrong types, text where numbers go, deep nesting, very long text), a key removed or
  an unknown key added, anywhere in the tree.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEEP = "\x00deep\x00"  # placeholder, replaced by deeply nested JSON text after dumping
HOSTILE: tuple[Any, ...] = (
    10**30, -(10**30), 2**31, 2**63, -1, 0, 1e308, -1e308, 1e-320, math.nan, math.inf, -math.inf, True, False, None,
    "", "x", "nan", "1e9", "cfg", "ddim50", [], [1], [1, 2, 3], {}, {"a": 1}, [[[[]]]], DEEP, "é" * 10_000,
)


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def overwrite(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    span = rng.randint(1, 64)
    return data[:start] + bytes(rng.randrange(256) for _ in range(span)) + data[start + span:]


def insert(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 32))) + data[at:]


BYTE_MUTATIONS = (flip_bits, truncate, overwrite, insert)


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    mutation = rng.choice(BYTE_MUTATIONS)
    return mutation.__name__, mutation(data, rng)


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def mutate_record(record: Any, rng: random.Random) -> tuple[str, Any]:
    """A deep copy of a JSON-able record with one hostile change; (what changed, the record)."""
    record = json.loads(json.dumps(record))
    paths = list(_paths(record))
    path = rng.choice(paths[1:] or paths)
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1] if path else None
    action = rng.random()
    if key is None:
        return "whole record replaced", rng.choice(HOSTILE)
    if action < 0.1 and isinstance(parent, dict):
        del parent[key]
        return f"{'.'.join(map(str, path))} removed", record
    if action < 0.15 and isinstance(parent, dict):
        parent["unknown_" + str(rng.randrange(100))] = rng.choice(HOSTILE)
        return f"unknown key beside {'.'.join(map(str, path))}", record
    value = rng.choice(HOSTILE)
    parent[key] = value
    return f"{'.'.join(map(str, path))} = {short(value)}", record


def dumps(record: Any) -> str:
    """JSON text of a mutated record (NaN and infinities as Python writes them; DEEP as 50 000 levels)."""
    text = json.dumps(record)
    return text.replace(json.dumps(DEEP), "[" * 50_000 + "]" * 50_000)


def short(value: Any) -> str:
    text = "deep nesting" if value == DEEP else repr(value)
    return text if len(text) <= 30 else f"{text[:30]}…"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Tally:
    """What a fuzz run did: cases, outcomes, and every failure with its case."""

    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        self.cases += other.cases
        self.outcomes.update(other.outcomes)
        self.failures += other.failures


def check_case(tally: Tally, what: str, attempt: Callable[[], Any], folder: Path | None = None) -> None:
    """Run one case under the oracle: accepted, or a one-line ValueError; and `folder` unchanged."""
    before = snapshot(folder) if folder is not None else None
    tally.cases += 1
    try:
        attempt()
    except ValueError as exc:
        message = str(exc)
        if not message.strip() or "\n" in message.strip() or "Traceback" in message:
            tally.failures.append(f"{what}: unreadable message {message[:200]!r}")
        else:
            tally.outcomes["refused"] += 1
    except Exception as exc:  # the oracle: anything but a ValueError is a defect
        tally.failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        tally.outcomes["accepted"] += 1
    if folder is not None and snapshot(folder) != before:
        tally.failures.append(f"{what}: files changed")


# --- targets ---------------------------------------------------------------------------------------
# Each makes a real input in `folder`, then runs `cases` mutated copies of it through an entry point.

def _cases(seed: int, cases: int) -> Iterator[random.Random]:
    for i in range(cases):
        yield random.Random(f"{seed}-{i}")


def points_result(seed: int = 0) -> Any:
    """A real recorded toy-gmm run (a few steps), as the app saves it."""
    from core import Guidance, SamplingRequest, load_model, sample
    from core.recording import Recorder

    request = SamplingRequest(model="toy-gmm", steps="4", guidance=Guidance(kind="cfg", weight=1.5), label=2,
                              seed=seed, batch=16)
    recorder = Recorder(request, "toy-gmm", "cpu", is_points=True)
    for step in sample(request, load_model("toy-gmm", device="cpu")):
        recorder.add(step)
    return recorder.result(completed=True)


def fuzz_png(folder: Path, cases: int, seed: int = 0) -> Tally:
    """Saved PNGs with their bytes or their embedded settings mutated → read back and checked against the
    panels' limits (the app's reopen path without the window)."""
    from PIL import Image, PngImagePlugin

    from core.pngmeta import CHUNK_KEY, read_metadata, read_settings
    from desktop_app.library.pngio import save_result
    from desktop_app.session import Session

    base = save_result(points_result(seed), folder / "base", with_run=False).grid
    data, record = base.read_bytes(), read_metadata(base)
    work = folder / "cases"
    work.mkdir()
    tally = Tally()

    def reopen(path: Path) -> None:
        model, request = read_settings(path)
        Session().apply_request(request, model)

    for rng in _cases(seed, cases):
        path = work / "case.png"
        if rng.random() < 0.4:
            what, mutated = mutate_bytes(data, rng)
            path.write_bytes(mutated)
        else:
            what, changed = mutate_record(record, rng)
            info = PngImagePlugin.PngInfo()
            info.add_text(CHUNK_KEY, dumps(changed))
            with Image.open(base) as img:
                img.save(path, pnginfo=info)
        check_case(tally, f"png {what}", lambda: reopen(path), work)
    return tally


def fuzz_run_file(folder: Path, cases: int, seed: int = 0) -> Tally:
    """Run files (.run.npz) with mutated bytes → their record and their arrays read back."""
    from core.runs import read_run, read_run_meta, write_run

    base = write_run(folder / "base.run.npz", points_result(seed))
    data = base.read_bytes()
    work = folder / "cases"
    work.mkdir()
    tally = Tally()
    for rng in _cases(seed, cases):
        path = work / "case.run.npz"
        what, mutated = mutate_bytes(data, rng)
        path.write_bytes(mutated)
        check_case(tally, f"run file {what}", lambda: (read_run_meta(path), read_run(path)), work)
    return tally


def small_bundle() -> Any:
    import torch

    from core import ModelBundle, ModelConfig
    from core.models import build_network

    config = ModelConfig("mlp", (2,), network={"data_dim": 2, "width": 16, "depth": 1, "num_classes": 3},
                         num_classes=3, class_names=("a", "b", "c"), null_label=True, clip="none")
    torch.manual_seed(0)
    return ModelBundle("tiny", config, build_network("mlp", config.network).eval())


def _safetensors_parts(data: bytes) -> tuple[dict, bytes]:
    import struct

    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def _safetensors_bytes(header_text: str, body: bytes) -> bytes:
    import struct

    raw = header_text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw + body


def fuzz_bundle(folder: Path, cases: int, seed: int = 0) -> Tally:
    """Bundle files (.safetensors) with mutated bytes, header entries or configuration → loaded, and a
    loaded one sampled for 3 steps."""
    from core import Guidance, SamplingRequest, final_sample
    from core.checkpoints import load_bundle, save_bundle

    base = save_bundle(small_bundle(), folder / "base.safetensors")
    data = base.read_bytes()
    header, body = _safetensors_parts(data)
    config = json.loads(header["__metadata__"]["config"])
    work = folder / "cases"
    work.mkdir()
    tally = Tally()

    def load_and_sample(path: Path) -> None:
        bundle = load_bundle(path)
        request = SamplingRequest(model=bundle.name, steps="3", batch=2, label=0,
                                  guidance=Guidance("cfg", weight=1.0) if bundle.config.null_label else Guidance())
        final_sample(request, bundle)

    for rng in _cases(seed, cases):
        path = work / "case.safetensors"
        choice = rng.random()
        if choice < 0.35:
            what, mutated = mutate_bytes(data, rng)
        elif choice < 0.7:
            what, changed = mutate_record(config, rng)
            new_header = json.loads(json.dumps(header))
            new_header["__metadata__"]["config"] = dumps(changed)
            what, mutated = f"config {what}", _safetensors_bytes(json.dumps(new_header), body)
        else:
            what, changed = mutate_record({k: v for k, v in header.items() if k != "__metadata__"}, rng)
            if isinstance(changed, dict):
                changed["__metadata__"] = header["__metadata__"]
            what, mutated = f"header {what}", _safetensors_bytes(dumps(changed), body)
        path.write_bytes(mutated)
        check_case(tally, f"bundle {what}", lambda: load_and_sample(path), work)
    return tally


GD_FLAGS = ("--image_size 16 --num_channels 32 --num_res_blocks 1 --attention_resolutions 8 --channel_mult 1,2 "
            "--num_head_channels 32 --learn_sigma True --class_cond True")


def fuzz_pt(folder: Path, cases: int, seed: int = 0) -> Tally:
    """guided-diffusion .pt files with mutated bytes or tensors (shapes, dtypes, NaN, missing, extra,
    not tensors) → opened with the weights' inferred layout."""
    import torch

    from core.guided_diffusion import load_checkpoint, parse_flags, unet_network
    from core.models import build_network

    state = build_network("unet", unet_network(parse_flags(GD_FLAGS))).state_dict()
    base = folder / "base.pt"
    torch.save(state, base)
    data = base.read_bytes()
    work = folder / "cases"
    work.mkdir()
    tally = Tally()
    keys = sorted(state)
    for rng in _cases(seed, cases):
        path = work / "case.pt"
        if rng.random() < 0.5:
            what, mutated = mutate_bytes(data, rng)
            path.write_bytes(mutated)
        else:
            changed = dict(state)
            key = rng.choice(keys)
            kind = rng.choice(("shape", "dtype", "nan", "missing", "extra", "scalar", "text", "empty"))
            if kind == "shape":
                changed[key] = torch.zeros(*[rng.randint(1, 40) for _ in range(rng.randint(1, 4))])
            elif kind == "dtype":
                changed[key] = changed[key].to(rng.choice((torch.int32, torch.int64, torch.bool, torch.float16)))
            elif kind == "nan":
                changed[key] = torch.full_like(changed[key], math.nan)
            elif kind == "missing":
                del changed[key]
            elif kind == "extra":
                changed[f"{key}.extra"] = torch.zeros(3)
            elif kind == "scalar":
                changed[key] = torch.tensor(1.0)
            elif kind == "text":
                changed[key] = "not a tensor"
            else:
                changed = {}
            what = f"{kind} {key}"
            torch.save(changed, path)
        # the image size is all the weights cannot tell (without it every case stopped at that one refusal)
        check_case(tally, f"pt {what}", lambda: load_checkpoint(path, image_size=16, device="cpu"), work)
    return tally


def fuzz_settings(cases: int, seed: int = 0) -> Tally:
    """The stored settings of the last session, mutated → parsed; every value must be usable."""
    from desktop_app import limits
    from desktop_app.session import Settings

    record = Settings(seed=7, guidance="cfg", weight=3.0, window_on=True, window_start=0.2).to_dict()
    tally = Tally()

    def parse(stored: Any) -> None:
        settings, _notes = Settings.parse(stored)
        for name, limit in limits.SETTINGS.items():
            problem = limit.problem(getattr(settings, name))
            if problem:
                raise AssertionError(f"{name} = {getattr(settings, name)!r} was let through: {problem}")

    for rng in _cases(seed, cases):
        what, changed = mutate_record(record, rng)
        text = dumps(changed)
        try:
            stored = json.loads(text)
        except (ValueError, RecursionError):
            stored = None  # what MainWindow.restore_state passes for unreadable text
        check_case(tally, f"settings {what}", lambda: parse(stored))
    return tally


LIBRARY_COLUMNS = ("created", "model", "settings", "device", "seconds", "completed", "thumbnail", "files")


def fuzz_library_rows(folder: Path, cases: int, seed: int = 0, gallery: Any = None) -> Tally:
    """Library rows with one column mutated (hostile values, bytes, damaged JSON) → listed (and shown in
    `gallery` when given, then reopened through its entry), never a failure for the other rows."""
    import sqlite3

    from desktop_app.library.store import DB_NAME, Library
    from desktop_app.session import Session

    library = Library(folder / "library")
    ids = [library.record(points_result(s)).id for s in range(3)]
    path = folder / "library" / DB_NAME
    original = {row[0]: row for row in sqlite3.connect(path).execute("SELECT * FROM runs")}
    tally = Tally()

    def listed() -> None:
        entries = library.list()
        if {e.id for e in entries} | {s.id for s in library.skipped} != set(ids):
            raise AssertionError("a row was neither listed nor reported")
        for entry in entries:
            entry.title, entry.flat_settings()
            try:
                Session().apply_request(entry.request, entry.model)
            except ValueError:
                pass  # refused with its sentence: the gallery shows it
        if gallery is not None:
            gallery.refresh()

    for rng in _cases(seed, cases):
        target = rng.choice(ids)
        column = rng.choice(LIBRARY_COLUMNS)
        if column in ("settings", "files") and rng.random() < 0.7:
            what, changed = mutate_record(json.loads(original[target][LIBRARY_COLUMNS.index(column) + 1]), rng)
            value: Any = dumps(changed)
        else:
            value = rng.choice((*HOSTILE[:12], "text", b"\x89PNG\r\n", b"", 3.5, -7))
            value = value if not isinstance(value, (list, dict)) and value != DEEP else str(value)
            what = short(value)
        db = sqlite3.connect(path)
        try:
            with db:
                db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (value, target))  # noqa: S608 (fixed names)
        except (sqlite3.IntegrityError, OverflowError):
            continue  # SQLite itself refuses it (NULL in a NOT NULL column, a 100-bit integer): no such row
        finally:
            db.close()
        check_case(tally, f"library {column}: {what}", listed)
        db = sqlite3.connect(path)
        with db:  # put the row back for the next case
            db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?",
                       (original[target][LIBRARY_COLUMNS.index(column) + 1], target))
        db.close()
    library.close()
    return tally


def fuzz_library_groups(folder: Path, cases: int, seed: int = 0, gallery: Any = None) -> Tally:
    """A saved sweep's group row with its settings mutated → listed or skipped and named (and shown in
    `gallery` when given), and, when listed, reopened as its grid's spec or refused with one sentence."""
    import sqlite3

    import numpy as np

    from core import Guidance, SamplingRequest
    from desktop_app.compare.sweep import SweepSpec
    from desktop_app.library.store import DB_NAME, Library

    library = Library(folder / "library")
    base = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="cfg", weight=1.0), label=2, batch=20)
    spec = SweepSpec(base, "weight", (1.0, 2.0), (0, 1))
    results = {(r, c): points_result(2 * r + c) for r in range(2) for c in range(2)}
    group_id, ids = library.reserve_group("sweep", "toy-gmm", spec.to_dict() | {"completed": True}, results)
    picture = np.zeros((8, 8, 3), np.uint8)
    library.finish_group(library.write_group_files(group_id, {ids[k]: v for k, v in results.items()}, picture, {}))
    path = folder / "library" / DB_NAME
    original = json.loads(sqlite3.connect(path).execute("SELECT settings FROM groups").fetchone()[0])
    tally = Tally()

    def reopened() -> None:
        before = len(library.skipped)
        groups = library.groups()
        named = [s.id for s in library.skipped[before:]]
        if [g.id for g in groups] + named != [group_id]:
            raise AssertionError("the group was neither listed nor reported")
        if gallery is not None:
            gallery.refresh()
        for group in groups:
            SweepSpec.of_group(group.settings, group.cells)

    for rng in _cases(seed, cases):
        what, changed = mutate_record(original, rng)
        db = sqlite3.connect(path)
        with db:
            db.execute("UPDATE groups SET settings = ?", (dumps(changed),))
        db.close()
        check_case(tally, f"group settings {what}", reopened)
    library.close()
    return tally
