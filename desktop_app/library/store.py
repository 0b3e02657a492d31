"""The run library: an SQLite index of finished runs with thumbnails and their saved files. Qt-free.

The data folder is `platformdirs.user_data_dir("guidance-studio")`, overridden by the environment
variable GUIDANCE_STUDIO_DATA or by passing a folder to `Library`. It holds `library.sqlite3` and
`runs/` (the PNGs `record` saves). The schema version is kept in PRAGMA user_version.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

if TYPE_CHECKING:  # core loads torch: imported where needed, so the window opens first
    from core import SamplingRequest

    from ..run.results import RunResult

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


def _unlink(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class Library:
    """Add, list, get and delete recorded runs. One connection; use it from one thread."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else data_dir()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.folder / DB_NAME)
        except (OSError, sqlite3.Error) as exc:
            raise ValueError(f"Cannot open the run library in {self.folder}: {exc}.") from exc
        self._db.row_factory = sqlite3.Row
        self._migrate()
        # A write-ahead log with NORMAL sync: adding a run does not wait for the disk (an insert on the
        # GUI thread stays well under a millisecond); a crash can lose at most the last few entries.
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            pass  # e.g. a file system without shared memory: keep the default journal

    @property
    def runs_folder(self) -> Path:
        return self.folder / "runs"

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"The run library in {self.folder} was written by a newer Guidance Studio "
                f"(schema {version}, this version reads up to {SCHEMA_VERSION}); please update the app."
            )
        for target in range(version, SCHEMA_VERSION):
            with self._db:
                self._db.executescript(_MIGRATIONS[target])
                self._db.execute(f"PRAGMA user_version = {target + 1}")

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
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise ValueError(f"The library has no run with id {entry_id}.")
        return _entry(row)

    def list(self, model: str | None = None) -> list[LibraryEntry]:
        """All entries, newest first, optionally only those of one model."""
        if model is None:
            rows = self._db.execute("SELECT * FROM runs ORDER BY created DESC, id DESC")
        else:
            rows = self._db.execute("SELECT * FROM runs WHERE model = ? ORDER BY created DESC, id DESC",
                                    (model,))
        return [_entry(r) for r in rows]

    def models(self) -> list[str]:
        """The distinct model names that have entries, sorted."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT model FROM runs ORDER BY model")]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _entry(row: sqlite3.Row) -> LibraryEntry:
    return LibraryEntry(
        id=row["id"], created=row["created"], model=row["model"], settings=json.loads(row["settings"]),
        device=row["device"], seconds=row["seconds"], completed=bool(row["completed"]),
        thumbnail=row["thumbnail"], files=tuple(Path(p) for p in json.loads(row["files"])),
    )
