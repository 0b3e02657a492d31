"""The run library: an SQLite index of finished runs with thumbnails and their saved files. Qt-free.

The data folder is `platformdirs.user_data_dir("guidance-studio")`, overridden by the environment
variable GUIDANCE_STUDIO_DATA or by passing a folder to `Library`. It holds `library.sqlite3` and
`runs/` (the PNGs `record` saves). The schema version is kept in PRAGMA user_version.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
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
SCHEMA_VERSION = 1

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
]


def data_dir() -> Path:
    """The folder of the library: $GUIDANCE_STUDIO_DATA, else the platform's user data folder."""
    override = os.environ.get(ENV_VAR, "").strip()
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir("guidance-studio"))


@dataclass(frozen=True)
class LibraryEntry:
    """One recorded run. settings: the request as a dict; files: saved paths, the grid first."""

    id: int
    created: float
    model: str
    settings: dict[str, Any]
    device: str
    seconds: float
    completed: bool
    thumbnail: bytes | None
    files: tuple[Path, ...]

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
    """A run whose files are saved and whose thumbnail is encoded, not yet in the index."""

    model: str
    request: SamplingRequest
    device: str
    seconds: float
    completed: bool
    created: float
    thumbnail: bytes
    files: tuple[Path, ...]


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


def _unlink(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


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

    @property
    def path(self) -> Path:
        return self.folder / DB_NAME

    @property
    def runs_folder(self) -> Path:
        return self.folder / "runs"

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
            return self._checked(sqlite3.connect(self.path))
        except _Damaged as exc:
            damage = str(exc)
        except sqlite3.Error as exc:  # locked, unreadable, disk full during an upgrade: leave the file be
            return self._read_only(f"The run library in {self.folder} cannot be opened for writing ({exc})")
        aside = self.path.with_name(f"{DB_NAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            _move_database(self.path, aside)
            db = self._checked(sqlite3.connect(self.path))
        except (OSError, sqlite3.Error, _Damaged) as exc:
            return self._read_only(f"The run library in {self.folder} is damaged ({damage}) and could not be "
                                   f"replaced ({exc})")
        self.notice = (f"The run library was damaged ({damage}). It was moved aside as {aside.name} and a new, "
                       "empty library was started.")
        return db

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
                    raise _Damaged(f"integrity check: {problems[0]}")
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
            created: float | None = None) -> LibraryEntry:
        """Insert one run and return its entry."""
        with self._db:
            cur = self._db.execute(
                "INSERT INTO runs (created, model, settings, device, seconds, completed, thumbnail, files)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time() if created is None else created, model, json.dumps(request.to_dict()),
                 device, float(seconds), int(bool(completed)), thumbnail,
                 json.dumps([str(p) for p in files])),
            )
        return self.get(cur.lastrowid)

    def prepare(self, result: RunResult, per_sample: bool = True) -> PreparedRun:
        """Save the run's PNGs under runs/ and encode its thumbnail. Touches no database, so it may run
        on any thread (the window does it off the GUI thread); `add_prepared` then lists the run."""
        from .pngio import result_picture, save_result, thumbnail_png

        created = time.time()
        saved = save_result(result, self.runs_folder, per_sample=per_sample)
        try:
            thumbnail = thumbnail_png(result_picture(result))
        except BaseException:
            _unlink(saved.all)
            raise
        return PreparedRun(result.model_name, result.request, result.device, float(result.seconds),
                           bool(result.completed), created, thumbnail, saved.all)

    def add_prepared(self, run: PreparedRun) -> LibraryEntry:
        """List a prepared run (the library's own thread); its files are removed if adding fails."""
        try:
            return self.add(run.model, run.request, device=run.device, seconds=run.seconds,
                            completed=run.completed, thumbnail=run.thumbnail, files=run.files,
                            created=run.created)
        except BaseException:
            _unlink(run.files)
            raise

    def record(self, result: RunResult, per_sample: bool = True) -> LibraryEntry:
        """Save the run's PNGs under runs/ and add it with a thumbnail; files are removed if adding fails."""
        return self.add_prepared(self.prepare(result, per_sample))

    def delete(self, entry_id: int) -> None:
        """Remove the entry and the files it lists; ValueError if there is no such entry."""
        entry = self.get(entry_id)
        with self._db:
            self._db.execute("DELETE FROM runs WHERE id = ?", (entry_id,))
        for path in entry.files:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # the entry is gone; a file we cannot remove stays where the user can see it

    # --- reading ---

    def get(self, entry_id: int) -> LibraryEntry:
        """The entry with this id; ValueError if there is none or its row cannot be read."""
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise ValueError(f"The library has no run with id {entry_id}.")
        try:
            return _entry(row)
        except BadRow as exc:
            raise ValueError(f"Run {entry_id} of the library cannot be read: {exc}.") from None

    def list(self, model: str | None = None) -> list[LibraryEntry]:
        """All readable entries, newest first, optionally only those of one model. Rows that cannot be
        read are left out and listed in `skipped` (replaced on every call)."""
        if model is None:
            rows = self._db.execute("SELECT * FROM runs ORDER BY created DESC, id DESC")
        else:
            rows = self._db.execute("SELECT * FROM runs WHERE model = ? ORDER BY created DESC, id DESC",
                                    (model,))
        entries, self.skipped = [], []
        for row in rows:
            try:
                entries.append(_entry(row))
            except BadRow as exc:
                self.skipped.append(SkippedRow(row["id"], str(exc)))
        return entries

    def models(self) -> list[str]:
        """The distinct model names that have entries, sorted."""
        names = (r[0] for r in self._db.execute("SELECT DISTINCT model FROM runs ORDER BY model"))
        return [name for name in names if isinstance(name, str)]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


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


def _entry(row: sqlite3.Row) -> LibraryEntry:
    """The entry of one row; BadRow says what is wrong with a row that does not fit the schema."""
    settings = _json(row["settings"], "settings", dict)
    guidance = settings.get("guidance", {})
    if not isinstance(guidance, dict):
        raise BadRow("its guidance settings are not a JSON object")
    shown = [guidance.get("scale", 0), guidance.get("weight", 0), settings.get("seed", 0)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in shown):
        raise BadRow("its seed or guidance strength is not a number")
    files = _json(row["files"], "file names", list)
    if not all(isinstance(f, str) and f and "\0" not in f for f in files):
        raise BadRow("its file names are not all text")
    model, device, thumbnail = row["model"], row["device"], row["thumbnail"]
    if not isinstance(model, str) or not isinstance(device, str):
        raise BadRow("its model or device name is not text")
    if thumbnail is not None and not isinstance(thumbnail, bytes):
        raise BadRow("its thumbnail is not a picture")
    return LibraryEntry(
        id=row["id"], created=_number(row["created"], "date"), model=model, settings=settings,
        device=device, seconds=_number(row["seconds"], "duration"), completed=bool(row["completed"]),
        thumbnail=thumbnail, files=tuple(Path(p) for p in files),
    )
