"""Files a user saves get the mode the umask gives every other program's files (0644 under umask 022),
not mkstemp's private 0600: saved PNGs and run files, library runs, GIFs, the CLI's outputs, bundles
written by `python -m core convert`, network files."""
from __future__ import annotations

import os
import stat

import pytest

from core import load_model
from core.checkpoints import save_bundle
from core.cli import main
from core.netfile import NetworkInfo, save_network
from desktop_app.library.export import export_gif
from desktop_app.library.pngio import save_result
from desktop_app.library.store import Library

from .test_pngio import points_run


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_files_follow_the_umask(tmp_path, umask):
    expected = 0o666 & ~umask  # 0o644 under 022, 0o640 under 027
    run = points_run(steps="4", batch=8)
    saved = save_result(run, tmp_path / "saved")
    assert [mode(p) for p in saved.all] == [expected] * len(saved.all) and saved.run is not None
    assert mode(export_gif(run, tmp_path / "run.gif")) == expected
    entry = Library(tmp_path / "library").record(run)
    assert [mode(p) for p in entry.files] == [expected] * len(entry.files)
    bundle = load_model("toy-gmm")
    assert mode(save_bundle(bundle, tmp_path / "model.safetensors")) == expected
    info = NetworkInfo("judge", "classifier", "gmm-classifier", {"num_components": 8}, ())
    assert mode(save_network(bundle.classifier, info, tmp_path / "net.safetensors")) == expected
    for suffix in (".npz", ".png"):
        out = tmp_path / f"cli{suffix}"
        assert main(["sample", "--steps", "3", "--num", "4", "--out", str(out)]) == 0
        assert mode(out) == expected
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".part", ".tmp"))]
