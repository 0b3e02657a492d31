"""Nothing saved is lost or overwritten: unique files per run, deleting keeps what other entries use,
saves are atomic per run and start-up clears what an interrupted save left (issue 9, items 3-5)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from core import Guidance, SamplingRequest
from core.pngmeta import read_metadata, read_settings
from core.runs import RunResult, read_run
from desktop_app.library.store import Library

ROOT = Path(__file__).resolve().parents[2]


def points_result(label: int = 1, seed: int = 0, completed: bool = True) -> RunResult:
    req = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="cfg", weight=2.0), label=label, seed=seed, batch=6)
    pts = np.random.default_rng(label).normal(0, 0.5, (3, 6, 2)).astype(np.float16)
    tracks = {"xt": list(pts), "x0": [None, *pts[1:]], "noise_level": [1.0, 0.5, 0.1]}
    return RunResult(req, "toy-gmm", "cpu", 0.2, pts[-1].astype(np.float32), tracks, num_steps=2,
                     completed=completed)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_runs_saved_in_the_same_second_get_their_own_files(tmp_path):
    lib = Library(tmp_path)
    first = lib.record(points_result(label=1))
    second = lib.record(points_result(label=5))  # the same second, model, guidance and seed
    assert not set(first.files) & set(second.files)
    assert read_settings(first.image_path)[1].label == 1 and read_settings(second.image_path)[1].label == 5
    assert read_metadata(first.image_path)["library_id"] == first.id
    assert str(first.id) in first.image_path.name and first.run_path.exists()
    assert read_run(first.run_path).request.label == 1
    lib.delete(second.id)
    assert all(p.exists() for p in first.files)
    assert read_settings(first.image_path)[1].label == 1


def test_deleting_an_entry_removes_only_files_no_other_entry_lists(tmp_path):
    lib = Library(tmp_path)
    shared = tmp_path / "runs" / "shared.png"  # two entries of an older version pointing at one file
    own = tmp_path / "runs" / "own.png"
    shared.parent.mkdir()
    shared.write_bytes(b"picture")
    own.write_bytes(b"picture")
    a = lib.add("toy-gmm", points_result().request, files=(shared, own))
    b = lib.add("toy-gmm", points_result().request, files=(shared,))
    lib.delete(a.id)
    assert shared.exists() and not own.exists()
    lib.delete(b.id)
    assert not shared.exists()


def test_each_run_is_written_in_its_own_folder_and_listed_only_when_complete(tmp_path):
    lib = Library(tmp_path)
    result = points_result()
    entry_id = lib.reserve(result)
    assert len(lib) == 0 and lib.list() == []  # being saved: not listed yet
    prepared = lib.write_files(entry_id, result)
    folder = lib.runs_folder / f"run-{entry_id:06d}"
    assert all(p.parent == folder for p in prepared.files) and not list(lib.runs_folder.glob(".saving-*"))
    entry = lib.finish(prepared)
    assert [e.id for e in lib.list()] == [entry.id] and entry.files == prepared.files
    lib.delete(entry.id)
    assert not folder.exists() and files_under(lib.runs_folder) == set()


def test_a_failed_save_leaves_neither_files_nor_an_entry(tmp_path, monkeypatch):
    from desktop_app.library import pngio

    lib = Library(tmp_path)
    result = points_result()
    entry_id = lib.reserve(result)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pngio, "write_run", full_disk)
    with pytest.raises(OSError):
        lib.write_files(entry_id, result)
    lib.abandon(entry_id)
    assert len(lib) == 0 and files_under(lib.runs_folder) == set()
    assert lib._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_start_up_clears_what_interrupted_saves_left(tmp_path):
    lib = Library(tmp_path)
    kept = lib.record(points_result(label=2))
    runs = lib.runs_folder
    # a save killed after its row was reserved, with half its files in the temporary folder
    orphan_id = lib.reserve(points_result(label=3))
    lib._db.execute("UPDATE runs SET saving = ? WHERE id = ?", (dead_pid(), orphan_id))
    lib._db.commit()
    (runs / f".saving-run-{orphan_id:06d}").mkdir()
    (runs / f".saving-run-{orphan_id:06d}" / "half.png").write_bytes(b"\x89PNG half")
    # what older versions left: PNGs no entry lists and temporary .part files
    (runs / "20240101-120000_toy-gmm_w2_seed0.png").write_bytes(b"orphan")
    (runs / ".20240101-120000_toy-gmm-abc.part").write_bytes(b"half")
    (runs / "run-999999").mkdir()
    (runs / "run-999999" / "x.png").write_bytes(b"no entry")
    lib.close()
    again = Library(tmp_path)
    assert files_under(runs) == set(kept.files)
    assert [e.id for e in again.list()] == [kept.id]
    assert again._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert again.swept >= 4


def test_a_save_in_progress_in_another_running_app_is_left_alone(tmp_path):
    lib = Library(tmp_path)
    entry_id = lib.reserve(points_result())
    partial = lib.runs_folder / f".saving-run-{entry_id:06d}"
    partial.mkdir(parents=True)
    (partial / "a.png").write_bytes(b"being written")
    other = Library(tmp_path)  # a second window opened meanwhile: this process is alive
    assert (partial / "a.png").exists() and other.swept == 0
    lib.finish(lib.write_files(entry_id, points_result()))
    assert len(other) == 1


KILLED_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from core import Guidance, SamplingRequest
    from core.runs import RunResult
    from desktop_app.library.store import Library
    lib = Library(sys.argv[1])
    req = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="none"), batch=2000, seed=0)
    points = np.random.default_rng(0).normal(0, 1, (100, 2000, 2)).astype(np.float16)
    tracks = {"xt": list(points), "x0": list(points), "noise_level": list(np.linspace(1, 0, 100))}
    result = RunResult(req, "toy-gmm", "cpu", 1.0, points[-1].astype(np.float32), tracks, num_steps=99)
    lib.record(result)
    print("ready", flush=True)
    while True:
        lib.record(result)
""")


def test_kill_9_while_saving_leaves_no_orphans(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for attempt in range(4):
        saver = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(tmp_path)], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        assert saver.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.04 * attempt)  # somewhere inside a save (~0.1 s: a scatter PNG and a run file)
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        saver.stdout.close()
    lib = Library(tmp_path)
    listed = {p for e in lib.list() for p in e.files}
    assert files_under(lib.runs_folder) == listed and len(lib) >= 1
    assert all(e.run_path is not None and len(read_run(e.run_path)) == 100 for e in lib.list())


def test_stopped_runs_are_marked_and_can_be_listed_alone(tmp_path):
    lib = Library(tmp_path)
    done = lib.record(points_result(label=1))
    stopped = lib.record(points_result(label=2, completed=False))
    assert not stopped.completed and done.completed
    assert [e.id for e in lib.list(completed=False)] == [stopped.id]
    assert [e.id for e in lib.list(completed=True)] == [done.id]
    assert read_metadata(stopped.image_path)["completed"] is False


def sweep_results() -> dict[tuple[int, int], RunResult]:
    return {(r, c): points_result(label=c + 1, seed=r) for r in range(2) for c in range(2)}


def test_a_sweep_is_saved_as_a_group_of_runs_and_deleted_as_one(tmp_path):
    lib = Library(tmp_path)
    alone = lib.record(points_result())
    results = sweep_results()
    group_id, ids = lib.reserve_group("sweep", "toy-gmm", {"parameter": "weight"}, results)
    assert lib.groups() == [] and [e.id for e in lib.list()] == [alone.id]  # nothing shows while saving
    picture = np.full((20, 30, 3), 200, np.uint8)
    prepared = lib.write_group_files(group_id, {ids[k]: r for k, r in results.items()}, picture, {"model": "toy-gmm"})
    group = lib.finish_group(prepared)
    assert [g.id for g in lib.groups()] == [group_id] and group.kind == "sweep" and group.thumbnail
    assert sorted(group.cells) == sorted((r, c, i) for (r, c), i in ids.items())
    members = lib.list(group_id=group_id)
    assert sorted(e.id for e in members) == sorted(ids.values())
    assert all(read_run(e.run_path).request == results[r, c].request for (r, c, i), e in
               zip(sorted(group.cells, key=lambda x: x[2]), sorted(members, key=lambda e: e.id)))
    assert [e.id for e in lib.list()] == [alone.id]  # a sweep's runs are listed with their group only
    assert group.files[0].exists() and group.files[0].parent.name == f"group-{group_id:06d}"
    lib.delete_group(group_id)
    assert lib.groups() == [] and lib.list(group_id=group_id) == []
    assert files_under(lib.runs_folder) == set(alone.files)


def test_a_sweep_save_killed_midway_is_cleared_at_start_up(tmp_path):
    lib = Library(tmp_path)
    results = sweep_results()
    group_id, ids = lib.reserve_group("sweep", "toy-gmm", {}, results)
    first = next(iter(ids.values()))
    lib.write_files(first, results[next(iter(ids))])  # one member written, then the process dies
    pid = dead_pid()
    lib._db.execute("UPDATE groups SET saving = ?", (pid,))
    lib._db.execute("UPDATE runs SET saving = ?", (pid,))
    lib._db.commit()
    lib.close()
    again = Library(tmp_path)
    assert again.groups() == [] and again._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert files_under(again.runs_folder) == set() and again.swept >= 1
