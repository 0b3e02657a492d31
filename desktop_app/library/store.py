"""The run library: an SQLite index of finished runs with thumbnails and their saved files. Qt-free.

The data folder is `platformdirs.user_data_dir("guidance-studio")`, overridden by the environment
variable GUIDANCE_STUDIO_DATA or by passing a folder to `Library`. It holds `library.sqlite3` and
`runs/`, where each run has its own folder `run-<id>/` (its PNGs and its run file, named after the
run's id, so no two runs ever share a file). The schema version is kept in PRAGMA user_version.

Saving is atomic per run: `reserve` adds the row marked as being saved by this process (hidden from
every listing), `write_files` writes into `runs/.saving-run-<id>/` and renames that to `run-<id>/`,
`finish` unmarks the row. A save that dies midway (kill -9, power cut) leaves a marked row of a
process that no longer runs and perhaps a `.saving-` folder; opening the library removes them, and
any file under runs/ that no entry lists (what older versions left). A damaged database is moved aside
with its runs folder (`library.sqlite3.damaged-<time>`, `runs.damaged-<time>`), and the runs folder of
a deleted database goes aside (`runs.unlisted-<time>`), so no saved file is lost.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

if TYPE_CHECKING:  # core loads torch: imported where needed, so the window opens first
    from core import SamplingRequest
    from core.runs import RunResult

ENV_VAR = "GUIDANCE_STUDIO_DATA"
DB_NAME = "library.sqlite3"
SCHEMA_VERSION = 2
RUNS = "runs"
STALE_SAVE_S = 24 * 3600  # a save marked this long ago is abandoned whatever its process id now names

# Each entry upgrades the schema from version i to i + 1.
_MIGRATIONS = [
    """
    CREATE TABLE runs (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        created   REAL    NOT NULL,             -- seconds since the epoch
        model     TEXT    NOT NULL,
        settings  TEXT    NOT NULL,             -- JSON of SamplingRequest.to_dict()
        device    TEXT    NOT NULL DEFAULT '',
        seconds   REAL    NOT NULL DEFAULT 0,   -- sampling wall time
        completed INTEGER NOT NULL DEFAULT 1,
        thumbnail BLOB,                         -- PNG bytes, at most 128 px on a side
        files     TEXT    NOT NULL DEFAULT '[]' -- JSON list of saved file paths, grid first
    );
    CREATE INDEX runs_model ON runs (model, created);
    """,
    """
    ALTER TABLE runs ADD COLUMN run_file TEXT NOT NULL DEFAULT '';  -- its run file (core.runs), '' if none
    ALTER TABLE runs ADD COLUMN group_id INTEGER;                   -- the sweep it belongs to (groups.id)
    ALTER TABLE runs ADD COLUMN saving   INTEGER;                   -- pid writing its files; NULL once saved
    CREATE TABLE groups (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        created   REAL    NOT NULL,
        kind      TEXT    NOT NULL,             -- 'sweep'
        model     TEXT    NOT NULL,
        settings  TEXT    NOT NULL,             -- JSON: what the group varies (a sweep's spec)
        thumbnail BLOB,
        files     TEXT    NOT NULL DEFAULT '[]',
        saving    INTEGER
    );
    CREATE INDEX runs_group ON runs (group_id);
    """,
]
# Paths in `files` and `run_file` are relative to the library folder (absolute in schema-1 rows).


def data_dir() -> Path:
    """The folder of the library: $GUIDANCE_STUDIO_DATA, else the platform's user data folder."""
    override = os.environ.get(ENV_VAR, "").strip()
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir("guidance-studio"))


@dataclass(frozen=True)
class LibraryEntry:
    """One recorded run. settings: the request as a dict; files: saved paths, the grid first;
    run_path: its run file with every step (None for runs recorded before run files existed);
    group_id: the sweep it belongs to, if any."""

    id: int
    created: float
    model: str
    settings: dict[str, Any]
    device: str
    seconds: float
    completed: bool
    thumbnail: bytes | None
    files: tuple[Path, ...]
    run_path: Path | None = None
    group_id: int | None = None

    @property
    def request(self) -> SamplingRequest:
        """The settings as a request; ValueError if they no longer validate."""
        from core import SamplingRequest

        return SamplingRequest.from_dict(self.settings)

    @property
    def image_path(self) -> Path | None:
        return self.files[0] if self.files else None

    @property
    def title(self) -> str:
        """A short caption: model, guidance and seed."""
        g = self.settings.get("guidance", {})
        kind = g.get("kind", "none")
        detail = {"classifier": f"s={g.get('scale', 0):g}", "cfg": f"w={g.get('weight', 0):g}",
                  "both": f"w={g.get('weight', 0):g} s={g.get('scale', 0):g}"}.get(kind, "no guidance")
        return f"{self.model} · {detail} · seed {self.settings.get('seed', 0)}"

    def flat_settings(self) -> dict[str, Any]:
        """Every setting of the run as one flat mapping (model and device included), for comparison."""
        out: dict[str, Any] = {"model": self.model}
        for key, value in self.settings.items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        out["device"] = self.device
        out["completed"] = self.completed
        return out


@dataclass(frozen=True)
class PreparedRun:
    """A reserved run whose files are written and whose thumbnail is encoded; `finish` lists it."""

    id: int
    thumbnail: bytes
    files: tuple[Path, ...]
    run_file: Path | None


@dataclass(frozen=True)
class GroupEntry:
    """Runs saved together: a sweep (kind "sweep"). settings: what the group varies (a sweep's spec,
    `sweep.SweepSpec.to_dict()`, with "cells": [[row, col, run id], …] and "completed"); files: its
    grid PNG."""

    id: int
    created: float
    kind: str
    model: str
    settings: dict[str, Any]
    thumbnail: bytes | None
    files: tuple[Path, ...]

    @property
    def completed(self) -> bool:
        return bool(self.settings.get("completed", True))

    @property
    def cells(self) -> list[tuple[int, int, int]]:
        """(row, col, run id) of each member run."""
        return [(int(r), int(c), int(i)) for r, c, i in self.settings.get("cells", [])]


@dataclass(frozen=True)
class PreparedGroup:
    """A reserved group whose members' files and grid picture are written; `finish_group` lists it."""

    id: int
    thumbnail: bytes
    files: tuple[Path, ...]
    members: tuple[PreparedRun, ...]


class _Damaged(Exception):
    """The database file is not a sound SQLite database (its message says what is wrong)."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Damage (not a database, malformed pages) as opposed to locks, permissions or a full disk."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _writable(folder: Path) -> bool:
    """Can files be created in `folder`? (Tried, not guessed: permissions say nothing about a
    read-only mount, and root passes every permission check.)"""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _move_database(path: Path, aside: Path) -> None:
    """Rename a database and its -wal/-shm companions (named as SQLite expects beside `aside`)."""
    for suffix in ("-wal", "-shm", ""):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, aside.with_name(aside.name + suffix))


def _alive(pid: int) -> bool:
    """Whether a process with this id runs now (never signals it)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill would terminate it there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process
    return True


def _remove(path: Path) -> bool:
    """Delete a file or a folder tree; False when it was not there or could not be removed."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        return False
    return True


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass


def run_folder_name(entry_id: int) -> str:
    return f"run-{entry_id:06d}"


def group_folder_name(group_id: int) -> str:
    return f"group-{group_id:06d}"


class Library:
    """Add, list, get and delete recorded runs. One connection; use it from one thread.

    Opening never fails on bad state (DESIGN.md, "Start-up never fails on bad state"): a damaged
    database file is moved aside as `library.sqlite3.damaged-<time>` and a new one started; a folder
    that cannot be written is opened read-only (`read_only`; nothing is recorded). `notice` then holds
    the one sentence to tell the user. Rows that cannot be read are skipped by `list` and named in
    `skipped`. Only a library written by a newer app version is refused (ValueError).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else data_dir()
        self.read_only = False
        self.notice: str | None = None
        self.skipped: list[SkippedRow] = []
        self.swept = 0  # files and folders of interrupted saves removed when opening
        self._db = self._open()
        self._db.row_factory = sqlite3.Row
        if self.read_only:
            return
        # A write-ahead log with NORMAL sync: adding a run does not wait for the disk (an insert on the
        # GUI thread stays well under a millisecond); a crash can lose at most the last few entries.
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            pass  # e.g. a file system without shared memory: keep the default journal
        self.swept = self._sweep()

    @property
    def path(self) -> Path:
        return self.folder / DB_NAME

    @property
    def runs_folder(self) -> Path:
        return self.folder / RUNS

    def _open(self) -> sqlite3.Connection:
        """A checked connection: the file as it is, or a fresh one after moving a damaged file aside,
        or read-only (the file as it is, or an empty in-memory library) when it cannot be written."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            writable = _writable(self.folder) and (not self.path.exists() or os.access(self.path, os.W_OK))
        except OSError as exc:
            return self._read_only(f"The run library folder {self.folder} cannot be created "
                                   f"({exc.strerror or exc})")
        if not writable:
            return self._read_only(f"The run library in {self.folder} cannot be written")
        try:
            if not self.path.exists() and self.runs_folder.is_dir() and any(self.runs_folder.iterdir()):
                return self._without_database()
            return self._checked(sqlite3.connect(self.path))
        except _Damaged as exc:
            damage = str(exc)
        except sqlite3.Error as exc:  # locked, unreadable, disk full during an upgrade: leave the file be
            return self._read_only(f"The run library in {self.folder} cannot be opened for writing ({exc})")
        stamp = time.strftime('%Y%m%d-%H%M%S')
        aside = self.path.with_name(f"{DB_NAME}.damaged-{stamp}")
        runs_aside = self.folder / f"{RUNS}.damaged-{stamp}"
        try:
            # The runs' files go aside with the database that lists them: left in runs/, the new library's
            # start-up sweep would delete them as orphans, and its new run ids would reuse their folders.
            if self.runs_folder.is_dir():
                os.rename(self.runs_folder, runs_aside)
            _move_database(self.path, aside)
            db = self._checked(sqlite3.connect(self.path))
        except (OSError, sqlite3.Error, _Damaged) as exc:
            return self._read_only(f"The run library in {self.folder} is damaged ({damage}) and could not be "
                                   f"replaced ({exc})")
        kept = f" (its runs' files in {runs_aside.name})" if runs_aside.is_dir() else ""
        self.notice = (f"The run library was damaged ({damage}). It was moved aside as {aside.name}{kept} and a "
                       "new, empty library was started.")
        return db

    def _without_database(self) -> sqlite3.Connection:
        """A new database beside the runs of a deleted one: their files go aside (runs.unlisted-<time>),
        or the start-up sweep would delete every one of them as an orphan."""
        kept = self.folder / f"{RUNS}.unlisted-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            os.rename(self.runs_folder, kept)
        except OSError as exc:
            return self._read_only(f"The run library in {self.folder} has runs but no database, and they could "
                                   f"not be moved aside ({exc.strerror or exc})")
        self.notice = (f"The run library's database {DB_NAME} was missing: a new, empty library was started and "
                       f"the files of the runs it listed were kept in {kept.name}.")
        return self._checked(sqlite3.connect(self.path))

    def _read_only(self, reason: str) -> sqlite3.Connection:
        """The existing file opened read-only if it is readable and sound, else an empty in-memory library."""
        self.read_only = True
        if self.path.is_file():
            try:  # immutable: no -wal/-shm files are needed (or made) in a folder that cannot be written
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
                db = self._checked(db, migrate=False)
                self.notice = f"{reason}: past runs are shown, but new runs are not recorded."
                return db
            except (sqlite3.Error, _Damaged) as exc:
                reason = f"{reason}, and its database cannot be read ({exc})"
        self.notice = f"{reason}: the library is empty and new runs are not recorded this session."
        return self._checked(sqlite3.connect(":memory:"))

    def _checked(self, db: sqlite3.Connection, migrate: bool = True) -> sqlite3.Connection:
        """`db` after a structural check and, when `migrate`, the schema upgrades. On failure `db` is
        closed and the error raised: _Damaged for a damaged file, ValueError for a newer schema,
        sqlite3.Error for anything else (locked, read-only, disk full)."""
        try:
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
                if problems != ["ok"]:
                    # SQLite's report starts with "*** in database main ***" on a line of its own
                    found = " ".join(line for line in str(problems[0]).splitlines() if not line.startswith("***"))
                    raise _Damaged(f"integrity check: {found}")
                if version > SCHEMA_VERSION:
                    raise ValueError(
                        f"The run library in {self.folder} was written by a newer Guidance Studio "
                        f"(schema {version}, this version reads up to {SCHEMA_VERSION}); please update the app."
                    )
                if version and not db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone():
                    raise _Damaged(f"schema {version} without its table of runs")
            except sqlite3.DatabaseError as exc:
                raise (_Damaged(str(exc)) if _is_damage(exc) else exc) from None
            if migrate:
                self._migrate(db, version)
            elif version < SCHEMA_VERSION:
                raise _Damaged(f"schema {version} cannot be upgraded read-only")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        for target in range(version, SCHEMA_VERSION):
            with db:
                db.executescript(_MIGRATIONS[target])
                db.execute(f"PRAGMA user_version = {target + 1}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---

    def add(self, model: str, request: SamplingRequest, *, device: str = "", seconds: float = 0.0,
            completed: bool = True, thumbnail: bytes | None = None, files: tuple[Path, ...] = (),
            created: float | None = None, run_file: Path | None = None) -> LibraryEntry:
        """Insert one run whose files (if any) already exist and return its entry."""
        with self._db:
            cur = self._db.execute(
                "INSERT INTO runs (created, model, settings, device, seconds, completed, thumbnail, files, run_file)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time() if created is None else created, model, json.dumps(request.to_dict()),
                 device, float(seconds), int(bool(completed)), thumbnail,
                 json.dumps([self._stored(p) for p in files]), self._stored(run_file) if run_file else ""),
            )
        return self.get(cur.lastrowid)

    def _stored(self, path: Path) -> str:
        """How a path is kept in a row: relative to the library folder when inside it."""
        path = Path(path)
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path)

    def reserve(self, result: RunResult, group_id: int | None = None) -> int:
        """Add `result` as a run being saved by this process (listed nowhere until `finish`); its id.
        Runs on the library's thread; `write_files(id, result)` may then run on any thread."""
        with self._db:
            cur = self._db.execute(
                "INSERT INTO runs (created, model, settings, device, seconds, completed, group_id, saving)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (float(result.created), result.model_name, json.dumps(result.request.to_dict()), result.device,
                 float(result.seconds), int(bool(result.completed)), group_id, os.getpid()),
            )
        return int(cur.lastrowid)

    def write_files(self, entry_id: int, result: RunResult, per_sample: bool = True) -> PreparedRun:
        """Write the run's PNGs, run file and thumbnail into `runs/run-<id>/`, atomically: into a
        temporary folder first, renamed when complete. Touches no database (any thread). SaveError (an
        OSError) when the disk refuses; then nothing is left and the caller should `abandon(id)`."""
        from .pngio import default_stem, result_picture, save_result, thumbnail_png

        name = run_folder_name(entry_id)
        final, temporary = self.runs_folder / name, self.runs_folder / f".saving-{name}"
        _remove(temporary)
        try:
            saved = save_result(result, temporary, stem=f"{name}_{default_stem(result)}", per_sample=per_sample,
                                library_id=entry_id)
            thumbnail = thumbnail_png(result_picture(result))
            os.replace(temporary, final)
        except BaseException:
            _remove(temporary)
            raise
        moved = tuple(final / p.name for p in saved.all)
        return PreparedRun(entry_id, thumbnail, moved, None if saved.run is None else final / saved.run.name)

    def finish(self, run: PreparedRun) -> LibraryEntry:
        """List a reserved run whose files are written (the library's thread)."""
        with self._db:
            self._db.execute(
                "UPDATE runs SET thumbnail = ?, files = ?, run_file = ?, saving = NULL WHERE id = ?",
                (run.thumbnail, json.dumps([self._stored(p) for p in run.files]),
                 self._stored(run.run_file) if run.run_file else "", run.id))
        return self.get(run.id)

    def abandon(self, entry_id: int) -> None:
        """Forget a reserved run whose files could not be written, with anything it left."""
        with self._db:
            self._db.execute("DELETE FROM runs WHERE id = ? AND saving IS NOT NULL", (entry_id,))
        for name in (run_folder_name(entry_id), f".saving-{run_folder_name(entry_id)}"):
            _remove(self.runs_folder / name)

    def record(self, result: RunResult, per_sample: bool = True, group_id: int | None = None) -> LibraryEntry:
        """Save the run's files and list it, in one go (this thread); nothing stays if saving fails."""
        entry_id = self.reserve(result, group_id)
        try:
            prepared = self.write_files(entry_id, result, per_sample)
        except BaseException:
            self.abandon(entry_id)
            raise
        return self.finish(prepared)

    def delete(self, entry_id: int) -> None:
        """Remove the entry and those of its files no other entry lists; ValueError if there is no such
        entry. Its run folder goes too once empty."""
        entry = self.get(entry_id)
        with self._db:
            self._db.execute("DELETE FROM runs WHERE id = ?", (entry_id,))
        used = self._listed_paths()
        own = [*entry.files, *((entry.run_path,) if entry.run_path else ())]
        for path in own:
            if path.resolve() not in used:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # the entry is gone; a file we cannot remove stays where the user can see it
        for folder in {p.parent for p in own if p.parent.parent == self.runs_folder}:
            _remove_if_empty(folder)

    # --- groups (sweeps) ---

    def reserve_group(self, kind: str, model: str, settings: dict[str, Any],
                      results: dict[tuple[int, int], RunResult]) -> tuple[int, dict[tuple[int, int], int]]:
        """Add a group and its runs (by grid cell) as being saved by this process, in one transaction;
        (group id, run id by cell). Nothing is listed until `finish_group`."""
        with self._db:
            cur = self._db.execute("INSERT INTO groups (created, kind, model, settings, saving) VALUES (?, ?, ?, ?, ?)",
                                   (time.time(), kind, model, "{}", os.getpid()))
            group_id = int(cur.lastrowid)
            ids = {}
            for key, result in results.items():
                cur = self._db.execute(
                    "INSERT INTO runs (created, model, settings, device, seconds, completed, group_id, saving)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (float(result.created), result.model_name, json.dumps(result.request.to_dict()), result.device,
                     float(result.seconds), int(bool(result.completed)), group_id, os.getpid()))
                ids[key] = int(cur.lastrowid)
            cells = [[r, c, i] for (r, c), i in sorted(ids.items())]
            self._db.execute("UPDATE groups SET settings = ? WHERE id = ?",
                             (json.dumps({**settings, "cells": cells}), group_id))
        return group_id, ids

    def write_group_files(self, group_id: int, runs: dict[int, RunResult], picture: Any,
                          meta: dict[str, Any]) -> PreparedGroup:
        """Every member's files (`write_files`) and the group's grid PNG (`meta` embedded) in
        runs/group-<id>/, each folder written atomically. Touches no database (any thread)."""
        from core.pngmeta import write_png

        from .pngio import thumbnail_png

        members = tuple(self.write_files(run_id, result, per_sample=False) for run_id, result in runs.items())
        name = group_folder_name(group_id)
        final, temporary = self.runs_folder / name, self.runs_folder / f".saving-{name}"
        _remove(temporary)
        try:
            temporary.mkdir(parents=True)
            grid = write_png(temporary / f"{name}_grid.png", picture, meta)
            thumbnail = thumbnail_png(picture)
            os.replace(temporary, final)
        except BaseException:
            _remove(temporary)
            raise
        return PreparedGroup(group_id, thumbnail, (final / grid.name,), members)

    def finish_group(self, group: PreparedGroup) -> GroupEntry:
        """List a reserved group and its runs, in one transaction (the library's thread)."""
        with self._db:
            for run in group.members:
                self._db.execute(
                    "UPDATE runs SET thumbnail = ?, files = ?, run_file = ?, saving = NULL WHERE id = ?",
                    (run.thumbnail, json.dumps([self._stored(p) for p in run.files]),
                     self._stored(run.run_file) if run.run_file else "", run.id))
            self._db.execute("UPDATE groups SET thumbnail = ?, files = ?, saving = NULL WHERE id = ?",
                             (group.thumbnail, json.dumps([self._stored(p) for p in group.files]), group.id))
        return self.get_group(group.id)

    def abandon_group(self, group_id: int) -> int:
        """Forget a group whose files could not be written (or that a dead process left), runs included;
        how many folders went."""
        runs = [row[0] for row in self._db.execute("SELECT id FROM runs WHERE group_id = ?", (group_id,))]
        with self._db:
            self._db.execute("DELETE FROM runs WHERE group_id = ?", (group_id,))
            self._db.execute("DELETE FROM groups WHERE id = ?", (group_id,))
        names = [*map(run_folder_name, runs), group_folder_name(group_id)]
        return sum(_remove(self.runs_folder / f"{prefix}{name}") for name in names for prefix in ("", ".saving-"))

    def delete_group(self, group_id: int) -> None:
        """Remove a group, its runs and their files; ValueError if there is no such group."""
        group = self.get_group(group_id)
        for entry in self.list(group_id=group_id):
            self.delete(entry.id)
        with self._db:
            self._db.execute("DELETE FROM runs WHERE group_id = ?", (group_id,))  # members that cannot be read
            self._db.execute("DELETE FROM groups WHERE id = ?", (group_id,))
        used = self._listed_paths()
        for path in group.files:
            if path.resolve() not in used:
                _remove(path)
        _remove_if_empty(self.runs_folder / group_folder_name(group_id))

    def get_group(self, group_id: int) -> GroupEntry:
        row = self._db.execute("SELECT * FROM groups WHERE id = ?", (group_id,)).fetchone()
        if row is None:
            raise ValueError(f"The library has no group with id {group_id}.")
        try:
            return _group(row, self.folder)
        except BadRow as exc:
            raise ValueError(f"Group {group_id} of the library cannot be read: {exc}.") from None

    def groups(self, model: str | None = None, completed: bool | None = None) -> list[GroupEntry]:
        """Saved groups, newest first (optionally of one model, only finished or only stopped ones)."""
        rows = self._db.execute("SELECT * FROM groups WHERE saving IS NULL ORDER BY created DESC, id DESC")
        out = []
        for row in rows:
            try:
                group = _group(row, self.folder)
            except BadRow as exc:
                self.skipped.append(SkippedRow(row["id"], f"(a group) {exc}"))
                continue
            if (model is None or group.model == model) and (completed is None or group.completed == completed):
                out.append(group)
        return out

    def _listed_paths(self) -> set[Path]:
        """Every file some row (run or group, saved or being saved) lists, resolved."""
        paths: set[Path] = set()
        rows = self._db.execute("SELECT files, run_file FROM runs UNION ALL SELECT files, '' FROM groups")
        for files, run_file in rows:
            try:
                names = json.loads(files) if isinstance(files, str) else []
            except (ValueError, RecursionError):
                continue
            names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
            if isinstance(run_file, str) and run_file:
                names.append(run_file)
            paths.update(_resolve(self.folder, n).resolve() for n in names if n and "\0" not in n)
        return paths

    def _sweep(self) -> int:
        """Remove what interrupted saves left (see the module docstring); how many paths went."""
        removed = 0
        now = time.time()


        def dead(row: Any) -> bool:
            return not isinstance(row[1], int) or not _alive(row[1]) or now - float(row[2] or 0) > STALE_SAVE_S

        try:
            for group in self._db.execute("SELECT id, saving, created FROM groups WHERE saving IS NOT NULL").fetchall():
                if dead(group):
                    removed += self.abandon_group(group[0])
            pending = self._db.execute("SELECT id, saving, created FROM runs WHERE saving IS NOT NULL").fetchall()
            gone = [row[0] for row in pending if dead(row)]
            with self._db:
                self._db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in gone])
            saving = {row[0] for row in pending} - set(gone)
            ids = {row[0] for row in self._db.execute("SELECT id FROM runs")}
            groups = {row[0]: row[1] for row in self._db.execute("SELECT id, saving FROM groups")}
        except sqlite3.Error:
            return 0
        if not self.runs_folder.is_dir():
            return 0
        listed = self._listed_paths()
        keep = {run_folder_name(i) for i in ids} | {f".saving-{run_folder_name(i)}" for i in saving}
        keep |= {group_folder_name(i) for i in groups}
        keep |= {f".saving-{group_folder_name(i)}" for i, pid in groups.items() if pid is not None}
        for path in self.runs_folder.iterdir():
            if path.is_dir() and path.name in keep:
                continue
            if path.is_dir() and any(p.resolve() in listed for p in path.rglob("*")):
                continue  # a folder an entry's files live in, whatever its name
            if path.resolve() not in listed and _remove(path):
                removed += 1
        return removed

    # --- reading ---

    def get(self, entry_id: int) -> LibraryEntry:
        """The entry with this id; ValueError if there is none or its row cannot be read."""
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise ValueError(f"The library has no run with id {entry_id}.")
        try:
            return _entry(row, self.folder)
        except BadRow as exc:
            raise ValueError(f"Run {entry_id} of the library cannot be read: {exc}.") from None

    def list(self, model: str | None = None, completed: bool | None = None,
             group_id: int | None = None) -> list[LibraryEntry]:
        """Saved entries, newest first: the runs of no group (or those of `group_id`), optionally only
        one model's, only finished (completed=True) or only stopped ones (False). Rows that cannot be
        read are left out and listed in `skipped` (replaced on every call)."""
        where, args = ["saving IS NULL"], []
        where.append("group_id IS NULL" if group_id is None else "group_id = ?")
        args += [] if group_id is None else [group_id]
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if completed is not None:
            where.append("completed = 1" if completed else "completed != 1")
        order = "created ASC, id ASC" if group_id is not None else "created DESC, id DESC"
        rows = self._db.execute(f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY {order}", args)
        entries, self.skipped = [], []
        for row in rows:
            try:
                entries.append(_entry(row, self.folder))
            except BadRow as exc:
                self.skipped.append(SkippedRow(row["id"], str(exc)))
        return entries

    def models(self) -> list[str]:
        """The distinct model names that have saved entries, sorted."""
        names = (r[0] for r in self._db.execute(
            "SELECT DISTINCT model FROM runs WHERE saving IS NULL ORDER BY model"))
        return [name for name in names if isinstance(name, str)]

    def __len__(self) -> int:
        """How many runs are saved (sweep members included)."""
        return self._db.execute("SELECT COUNT(*) FROM runs WHERE saving IS NULL").fetchone()[0]


class BadRow(ValueError):
    """A library row whose values are not what the schema promises (damaged or hand-edited)."""


@dataclass(frozen=True)
class SkippedRow:
    """A row `Library.list` left out, and why."""

    id: int
    reason: str


def _json(text: Any, what: str, kind: type) -> Any:
    if not isinstance(text, str):
        raise BadRow(f"its {what} are not text")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRow(f"its {what} are not valid JSON") from None
    if not isinstance(value, kind):
        raise BadRow(f"its {what} are not a JSON {'object' if kind is dict else 'list'}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value < 1e11:  # seconds: up to the year 5000
        raise BadRow(f"its {what} is not a plausible number")
    return float(value)


def _entry(row: sqlite3.Row, folder: Path) -> LibraryEntry:
    """The entry of one row; BadRow says what is wrong with a row that does not fit the schema."""
    settings = _json(row["settings"], "settings", dict)
    guidance = settings.get("guidance", {})
    if not isinstance(guidance, dict):
        raise BadRow("its guidance settings are not a JSON object")
    shown = [guidance.get("scale", 0), guidance.get("weight", 0), settings.get("seed", 0)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in shown):
        raise BadRow("its seed or guidance strength is not a number")
    files = _json(row["files"], "file names", list)
    run_file = row["run_file"]
    if not all(isinstance(f, str) and f and "\0" not in f for f in files) or not isinstance(run_file, str) \
            or "\0" in run_file:
        raise BadRow("its file names are not all text")
    model, device, thumbnail, group_id = row["model"], row["device"], row["thumbnail"], row["group_id"]
    if not isinstance(model, str) or not isinstance(device, str):
        raise BadRow("its model or device name is not text")
    if thumbnail is not None and not isinstance(thumbnail, bytes):
        raise BadRow("its thumbnail is not a picture")
    if group_id is not None and not isinstance(group_id, int):
        raise BadRow("its group is not a number")
    return LibraryEntry(
        id=row["id"], created=_number(row["created"], "date"), model=model, settings=settings,
        device=device, seconds=_number(row["seconds"], "duration"), completed=bool(row["completed"]),
        thumbnail=thumbnail, files=tuple(_resolve(folder, p) for p in files),
        run_path=_resolve(folder, run_file) if run_file else None, group_id=group_id,
    )


def _resolve(folder: Path, stored: str) -> Path:
    """A stored path: relative ones are inside the library folder (see the schema)."""
    path = Path(stored)
    return path if path.is_absolute() else folder / path


def _group(row: sqlite3.Row, folder: Path) -> GroupEntry:
    """The entry of one groups row; BadRow when it does not fit the schema."""
    settings = _json(row["settings"], "settings", dict)
    files = _json(row["files"], "file names", list)
    if not all(isinstance(f, str) and f and "\0" not in f for f in files):
        raise BadRow("its file names are not all text")
    values, seeds, cells = settings.get("values", []), settings.get("seeds", []), settings.get("cells", [])
    if not isinstance(values, list) or not isinstance(seeds, list):  # the gallery's caption counts them
        raise BadRow("its swept values or seeds are not lists")
    if not isinstance(cells, list) or not all(
            isinstance(c, list) and len(c) == 3 and all(type(v) is int and v >= 0 for v in c) for c in cells):
        raise BadRow("its cells are not a list of [row, column, run]")
    kind, model, thumbnail = row["kind"], row["model"], row["thumbnail"]
    if not isinstance(kind, str) or not isinstance(model, str):
        raise BadRow("its kind or model name is not text")
    if thumbnail is not None and not isinstance(thumbnail, bytes):
        raise BadRow("its thumbnail is not a picture")
    return GroupEntry(id=row["id"], created=_number(row["created"], "date"), kind=kind, model=model,
                      settings=settings, thumbnail=thumbnail, files=tuple(_resolve(folder, p) for p in files))
