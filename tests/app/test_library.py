"""The SQLite run library: add, list, filter, get, delete, record, schema version, data folder."""
from __future__ import annotations

import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

from core import Guidance, SamplingRequest
from core.pngmeta import read_settings
from core.runs import RunResult
from desktop_app.library import store as library_module
from desktop_app.library.store import Library, data_dir


def request(model: str = "toy-gmm", **changes) -> SamplingRequest:
    return SamplingRequest(model=model, guidance=Guidance(kind="cfg", weight=2.0), label=1, batch=4).replace(**changes)


def test_add_list_filter_get_delete(tmp_path):
    lib = Library(tmp_path)
    a = lib.add("toy-gmm", request(seed=1), device="cpu", seconds=1.5, created=100.0)
    b = lib.add("mnist", request("mnist", seed=2), device="cuda", completed=False, created=200.0)
    c = lib.add("toy-gmm", request(seed=3), created=300.0)
    assert len(lib) == 3
    assert [e.id for e in lib.list()] == [c.id, b.id, a.id]  # newest first
    assert [e.id for e in lib.list(model="toy-gmm")] == [c.id, a.id]
    assert lib.list(model="nothing") == []
    assert lib.models() == ["mnist", "toy-gmm"]
    got = lib.get(b.id)
    assert (got.model, got.device, got.completed, got.request) == ("mnist", "cuda", False, request("mnist", seed=2))
    assert lib.get(a.id).seconds == 1.5
    lib.delete(a.id)
    assert [e.id for e in lib.list()] == [c.id, b.id]
    with pytest.raises(ValueError, match=f"no run with id {a.id}"):
        lib.get(a.id)
    with pytest.raises(ValueError, match="no run with id"):
        lib.delete(a.id)


def test_entries_persist_and_schema_is_versioned(tmp_path):
    with Library(tmp_path) as lib:
        entry = lib.add("toy-gmm", request(seed=5), thumbnail=b"png", files=(tmp_path / "x.png",))
    with Library(tmp_path) as again:
        got = again.get(entry.id)
        assert got.request.seed == 5 and got.thumbnail == b"png" and got.files == (tmp_path / "x.png",)
    db = sqlite3.connect(tmp_path / library_module.DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == library_module.SCHEMA_VERSION
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="newer Guidance Studio"):
        Library(tmp_path)


def test_record_saves_files_and_thumbnail_and_delete_removes_them(tmp_path):
    rng = np.random.default_rng(1)
    req = SamplingRequest(model="imgs", batch=2, seed=9)
    run = RunResult(req, "imgs", "cpu", 3.0, rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32))
    lib = Library(tmp_path)
    entry = lib.record(run)
    folder = lib.runs_folder / f"run-{entry.id:06d}"
    assert len(entry.files) == 3 and all(p.parent == folder and p.exists() for p in entry.files)
    assert read_settings(entry.image_path) == ("imgs", req)
    thumb = Image.open(io.BytesIO(entry.thumbnail))
    assert thumb.format == "PNG" and max(thumb.size) <= 128
    outsider = tmp_path / "unrelated.png"
    outsider.write_bytes(b"keep")
    lib.delete(entry.id)
    assert not any(p.exists() for p in entry.files) and not folder.exists()
    assert outsider.exists() and len(lib) == 0


def test_points_run_is_recorded_with_its_scatter(tmp_path):
    req = SamplingRequest(model="toy-gmm", batch=5, label=0)
    run = RunResult(req, "toy-gmm", "cpu", 0.1, np.zeros((5, 2), np.float32))
    entry = Library(tmp_path).record(run)
    assert len(entry.files) == 1 and entry.title == "toy-gmm · no guidance · seed 0"


def test_data_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDANCE_STUDIO_DATA", str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data"
    lib = Library()
    assert (tmp_path / "data" / library_module.DB_NAME).exists() and lib.folder == tmp_path / "data"
    monkeypatch.delenv("GUIDANCE_STUDIO_DATA")
    assert data_dir().name == "guidance-studio"


def test_flat_settings_for_comparison(tmp_path):
    entry = Library(tmp_path).add("toy-gmm", request(seed=4), device="cpu")
    flat = entry.flat_settings()
    assert flat["model"] == "toy-gmm" and flat["guidance.weight"] == 2.0 and flat["seed"] == 4
    assert flat["guidance.window"] == [0.0, 1.0] and flat["device"] == "cpu"
    assert entry.title == "toy-gmm · w=2 · seed 4"
