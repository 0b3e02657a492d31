"""A damaged or unwritable run library never stops the app: damaged files are moved aside and a fresh
library is started, an unwritable folder opens read-only, bad rows are skipped and reported, and the
user is told once."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from core import Guidance, SamplingRequest
from core.runs import RunResult
from desktop_app.library.store import DB_NAME, Library

from .conftest import LOAD_TIMEOUT_MS


def points_result(seed: int) -> RunResult:
    req = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="cfg", weight=1.0), label=2, seed=seed, batch=20)
    pts = np.random.default_rng(seed).normal(0, 0.5, (20, 2)).astype(np.float32)
    return RunResult(req, "toy-gmm", "cpu", 0.5, pts)


def filled_library(folder, runs: int = 3) -> list[int]:
    with Library(folder) as lib:
        return [lib.record(points_result(seed)).id for seed in range(runs)]


def aside_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{DB_NAME}.damaged-"))


def test_random_bytes_are_moved_aside_and_a_new_library_started(tmp_path):
    garbage = np.random.default_rng(0).integers(0, 256, 9000, dtype=np.uint8).tobytes()
    (tmp_path / DB_NAME).write_bytes(garbage)
    lib = Library(tmp_path)
    assert not lib.read_only and len(lib) == 0 and lib.list() == []
    (aside,) = aside_files(tmp_path)
    assert (tmp_path / aside).read_bytes() == garbage  # nothing of the user's is deleted
    assert "file is not a database" in lib.notice and aside in lib.notice and "new, empty library" in lib.notice
    lib.record(points_result(7))  # the fresh library works
    assert [e.request.seed for e in Library(tmp_path).list()] == [7]


def test_damaged_pages_are_detected_at_opening(tmp_path):
    filled_library(tmp_path, runs=30)  # thumbnails spread the rows over many pages
    path = tmp_path / DB_NAME
    sqlite3.connect(path).close()  # the last connection folds the write-ahead log into the file
    assert not (tmp_path / f"{DB_NAME}-wal").exists()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page:3 * page + 64] = b"\xff" * 64  # the header of an interior page
    path.write_bytes(bytes(data))
    lib = Library(tmp_path)
    assert len(lib) == 0 and not lib.read_only
    assert len(aside_files(tmp_path)) == 1 and "was damaged (integrity check: " in lib.notice


def test_the_runs_of_a_deleted_database_are_kept(tmp_path):
    """Deleting library.sqlite3 (to start afresh) used to delete every saved run's files at the next start."""
    filled_library(tmp_path, runs=2)
    saved = sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs").rglob("*") if p.is_file())
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    lib = Library(tmp_path)
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("runs.unlisted-")]
    assert sorted(p.relative_to(kept) for p in kept.rglob("*") if p.is_file()) == saved and len(saved) == 2
    assert lib.notice == (f"The run library's database {DB_NAME} was missing: a new, empty library was started "
                          f"and the files of the runs it listed were kept in {kept.name}.")
    assert len(lib) == 0 and not lib.read_only
    lib.record(points_result(3))
    lib.close()
    assert Library(tmp_path).notice is None  # a normal start afterwards


def test_the_damage_is_said_in_one_line(tmp_path):
    """SQLite's integrity report for cell damage opens with a '*** in database main ***' line of its own."""
    filled_library(tmp_path, runs=30)
    path = tmp_path / DB_NAME
    sqlite3.connect(path).close()
    data = bytearray(path.read_bytes())
    for page in range(4096, len(data), 4096):
        data[page + 8:page + 200] = b"\xab" * 192
    path.write_bytes(bytes(data))
    notice = Library(tmp_path).notice
    assert notice.startswith("The run library was damaged (integrity check: On tree page ")
    assert "\n" not in notice and "***" not in notice


def test_the_runs_files_go_aside_with_a_damaged_database(tmp_path):
    """The new library's start-up sweep used to delete every saved file of the damaged one as an orphan."""
    filled_library(tmp_path, runs=3)
    saved = sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert len(saved) == 3
    (tmp_path / DB_NAME).write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    lib = Library(tmp_path)
    (aside,) = [p.name for p in tmp_path.iterdir() if p.name.startswith("runs.damaged-")]
    assert aside == aside_files(tmp_path)[0].replace(DB_NAME, "runs") and f"its runs' files in {aside}" in lib.notice
    new = lib.record(points_result(9))  # id 1 again: its own folder, not the old run 1's
    lib.close()
    Library(tmp_path).close()  # a second start-up sweeps nothing of them
    kept = sorted(p.relative_to(tmp_path / aside) for p in (tmp_path / aside).rglob("*") if p.is_file())
    assert kept == saved and new.files[0].is_file()
    assert [e.request.seed for e in Library(tmp_path).list()] == [9]


def test_rows_that_cannot_be_read_are_skipped_and_named(tmp_path):
    ids = filled_library(tmp_path, runs=5)
    db = sqlite3.connect(tmp_path / DB_NAME)
    with db:
        db.execute("UPDATE runs SET settings = '{bad' WHERE id = ?", (ids[1],))
        db.execute("UPDATE runs SET files = '{\"a\": 1}' WHERE id = ?", (ids[2],))
        db.execute("UPDATE runs SET settings = ? WHERE id = ?", ('{"guidance": "cfg", "seed": 1}', ids[3]))
    db.close()
    lib = Library(tmp_path)
    assert lib.notice is None
    assert [e.id for e in lib.list()] == [ids[4], ids[0]]
    assert [(s.id, s.reason) for s in sorted(lib.skipped, key=lambda s: s.id)] == [
        (ids[1], "its settings are not valid JSON"),
        (ids[2], "its file names are not a JSON list"),
        (ids[3], "its guidance settings are not a JSON object"),
    ]
    with pytest.raises(ValueError, match=f"Run {ids[1]} of the library cannot be read: its settings are not valid"):
        lib.get(ids[1])
    deep = "[" * 100_000 + "]" * 100_000
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE runs SET settings = ? WHERE id = ?", ('{"x": ' + deep + "}", ids[0]))
    assert [e.id for e in lib.list()] == [ids[4]] and ids[0] in [s.id for s in lib.skipped]


def saved_sweep(folder) -> int:
    """A 1 × 2 sweep group saved as the sweep window saves one; its id."""
    from desktop_app.compare.sweep import SweepSpec

    base = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="cfg", weight=1.0), label=2, batch=20)
    spec = SweepSpec(base, "weight", (1.0, 2.0), (0,))
    results = {(0, c): points_result(c) for c in range(2)}
    with Library(folder) as lib:
        group_id, ids = lib.reserve_group("sweep", "toy-gmm", spec.to_dict() | {"cells": []}, results)
        settings = spec.to_dict() | {"cells": [[r, c, i] for (r, c), i in ids.items()], "completed": True}
        lib._db.execute("UPDATE groups SET settings = ? WHERE id = ?", (json.dumps(settings), group_id))
        picture = np.zeros((8, 8, 3), np.uint8)
        lib.finish_group(lib.write_group_files(group_id, {ids[k]: r for k, r in results.items()}, picture, {}))
    return group_id


@pytest.mark.parametrize("change, reason", [
    ({"values": None}, "its swept values or seeds are not lists"),
    ({"seeds": 2**63}, "its swept values or seeds are not lists"),
    ({"cells": [[True, 0, 1]]}, "its cells are not a list of [row, column, run]"),
    ({"cells": [[-1, 0, 1]]}, "its cells are not a list of [row, column, run]"),
])
def test_a_damaged_sweep_row_is_skipped_and_named(qtbot, settings, tmp_path, change, reason):
    """A sweep's row that the gallery could not caption stopped the window's start (TypeError, exit 1)."""
    from desktop_app.main_window import MainWindow

    folder = tmp_path / "data"  # the app tests' private data folder
    group_id = saved_sweep(folder)
    with sqlite3.connect(folder / DB_NAME) as db:
        stored = json.loads(db.execute("SELECT settings FROM groups").fetchone()[0])
        db.execute("UPDATE groups SET settings = ?", (json.dumps(stored | change),))
    lib = Library(folder)
    assert lib.groups() == [] and [(s.id, s.reason) for s in lib.skipped] == [(group_id, f"(a group) {reason}")]
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.model_loaded, timeout=LOAD_TIMEOUT_MS):
        win.begin_startup()
    assert win.results.gallery.message.text().startswith("1 damaged run not shown: ")


def test_a_sweep_whose_cells_lie_outside_its_grid_is_not_reopened(window, tmp_path):
    """A cell at column 2⁴⁰ overflowed the grid layout's int on reopening (a traceback, a half-built grid)."""
    library = window.results.library
    group_id = saved_sweep(library.folder)
    with sqlite3.connect(library.folder / DB_NAME) as db:
        stored = json.loads(db.execute("SELECT settings FROM groups").fetchone()[0])
        db.execute("UPDATE groups SET settings = ?", (json.dumps(stored | {"cells": [[0, 2**40, 1]]}),))
    (group,) = library.groups()
    assert not window.results.reopen_group(group)
    assert window.last_error == f"Cannot reopen sweep #{group_id}: its cells lie outside its 1 × 2 grid."


@pytest.mark.parametrize("change, message", [
    ({"seeds": [float("inf")]}, "its record is damaged (cannot convert float infinity to integer)."),
    ({"base": None}, None),
])
def test_a_sweep_record_that_cannot_be_reopened_is_one_sentence(change, message):
    from desktop_app.compare.sweep import SweepSpec

    base = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="cfg", weight=1.0), label=2, batch=20)
    record = SweepSpec(base, "weight", (1.0, 2.0), (0,)).to_dict() | change
    with pytest.raises(ValueError) as refused:  # OverflowError escaped the gallery's reopen before
        SweepSpec.from_dict(record)
    assert message is None or str(refused.value) == message
    assert "\n" not in str(refused.value)
    del record["base"]
    with pytest.raises(ValueError, match="its record has no 'base'."):
        SweepSpec.from_dict(record)


def test_gallery_shows_the_readable_rows_and_says_which_were_skipped(qtbot, tmp_path):
    from desktop_app.library.gallery import GalleryWidget

    ids = filled_library(tmp_path, runs=3)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE runs SET settings = '[1, 2]' WHERE id = ?", (ids[0],))
    gallery = GalleryWidget(Library(tmp_path))
    qtbot.addWidget(gallery)
    assert gallery.entry_ids() == [ids[2], ids[1]] and gallery.count.text() == "2 runs"
    assert gallery.message.text() == f"1 damaged run not shown: run {ids[0]}: its settings are not a JSON object."


def test_an_uncreatable_folder_gives_an_empty_read_only_library(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    lib = Library(blocker / "lib")
    assert lib.read_only and len(lib) == 0 and lib.list() == []
    assert lib.notice.startswith(f"The run library folder {blocker / 'lib'} cannot be created")
    assert lib.notice.endswith("the library is empty and new runs are not recorded this session.")


READ_ONLY_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from desktop_app.library.store import Library
    lib = Library(sys.argv[1])
    print(lib.read_only, len(lib), [e.request.seed for e in lib.list()])
    print(lib.notice)
""")


def test_a_read_only_file_system_opens_the_library_read_only(tmp_path):
    """A real read-only mount (a private mount namespace); skipped where the machine does not allow one."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private read-only mount")
    folder = tmp_path / "data"
    filled_library(folder, runs=2)
    before = sorted((p.name, p.stat().st_size) for p in folder.rglob("*"))
    command = (f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" "{folder}" && '
               f'exec "{sys.executable}" -c "$0" "{folder}"')
    proc = subprocess.run(["unshare", "-m", "sh", "-c", command, READ_ONLY_SCRIPT], capture_output=True,
                          text=True, cwd=os.getcwd(), timeout=60)
    if proc.returncode != 0 and "mount" in proc.stderr:
        pytest.skip(f"no private read-only mount here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    first, notice = proc.stdout.splitlines()
    assert first == "True 2 [1, 0]"
    assert notice == (f"The run library in {folder} cannot be written: "
                      "past runs are shown, but new runs are not recorded.")
    assert sorted((p.name, p.stat().st_size) for p in folder.rglob("*")) == before


def test_the_window_starts_on_a_damaged_library_and_says_so_once(qtbot, settings, tmp_path):
    from desktop_app.main_window import MainWindow

    folder = tmp_path / "data"  # the app tests' private data folder
    folder.mkdir()
    (folder / DB_NAME).write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    shown = []
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.error_shown.connect(shown.append)
    win.show()
    with qtbot.waitSignal(win.model_loaded, timeout=LOAD_TIMEOUT_MS):
        win.begin_startup()
    assert len(shown) == 1 and shown[0].startswith("The run library was damaged") and "moved aside as" in shown[0]
    assert win.results.gallery is not None and win.results.gallery.entry_ids() == []
    assert len(aside_files(folder)) == 1
