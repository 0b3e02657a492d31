"""`python -m core sample` refuses what it could not finish — an output it cannot write, a run that cannot
fit in memory — before it samples, with exit status 2 and one readable line; a disk that fills up while
writing gives the same, and nothing half-written is left."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest
from safetensors import SafetensorError

import core.commands.sample as sample_command
from core import distributed, runs
from core.cli import main


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail the test if sampling starts: the refusals must come first."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("sampling started before the check")

    monkeypatch.setattr(sample_command, "sample", refuse)


def error_line(capsys) -> str:
    """The one error line (after any progress lines), with no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n")
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and sum(line.startswith("error") for line in err.splitlines()) == 1
    return last


def test_an_output_that_is_a_folder_is_refused(tmp_path, capsys, no_sampling):
    (tmp_path / "runs.npz").mkdir()
    assert main(["sample", "--out", str(tmp_path / "runs.npz")]) == 2
    assert error_line(capsys) == (f"error: --out {tmp_path / 'runs.npz'} is a folder; give a file name ending in "
                                  ".npz or .png.")


def test_an_output_folder_that_cannot_be_made_is_refused(tmp_path, capsys, no_sampling):
    (tmp_path / "file").write_text("x")
    assert main(["sample", "--out", str(tmp_path / "file" / "out.npz")]) == 2
    assert error_line(capsys) == (f"error: Cannot write out.npz into {tmp_path / 'file'}: {tmp_path / 'file'} is a "
                                  "file, not a folder.")  # mkdir's "File exists" did not say which


def test_a_read_only_file_system_is_refused_before_sampling(tmp_path):
    """A real read-only mount in a private mount namespace (skipped where the machine allows none)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    folder = tmp_path / "ro"
    folder.mkdir()
    script = (f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" "{folder}" && '
              f'exec "{sys.executable}" -m core sample --steps 3 --num 5 --out "{folder}/out.npz"')
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=os.getcwd())
    if "mount" in proc.stderr and proc.returncode != 2:
        pytest.skip(f"no private read-only mount here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: Cannot write out.npz into {folder}: Read-only file system.\n"
    assert list(folder.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs, "write_npz", full)  # what writes the run file's bytes
    assert main(["sample", "--steps", "3", "--num", "5", "--out", str(tmp_path / "out.npz")]) == 2
    assert error_line(capsys) == f"error: Could not save out.npz in {tmp_path}: No space left on device."
    assert [p.name for p in tmp_path.iterdir()] == [".out.npz.shards"]  # finished batches, kept to resume


def test_a_disk_that_fills_while_batches_are_stored_is_one_line(tmp_path, capsys, monkeypatch):
    """safetensors reports a full disk with its own error type, which escaped as a traceback (rc 1)."""
    def full(_tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(distributed, "save_file", full)
    assert main(["sample", "--steps", "3", "--num", "4", "--batch", "2", "--out", str(tmp_path / "out.png")]) == 2
    shards = tmp_path / ".out.png.shards"
    folder = next(shards.iterdir())
    assert error_line(capsys) == f"error: Could not store a finished batch in {folder}: No space left on device."
    assert not (tmp_path / "out.png").exists() and not [p for p in folder.iterdir() if p.suffix == ".tmp"]


def test_a_run_that_cannot_fit_in_memory_is_refused_up_front(tmp_path, capsys, monkeypatch, no_sampling):
    monkeypatch.setattr(sample_command, "free_memory", lambda _device: 2 * 2**30)
    out = str(tmp_path / "out.npz")
    assert main(["sample", "--num", "10000000", "--out", out]) == 2  # bad_alloc after 30 s before
    assert error_line(capsys) == ("error: A batch of 10000000 samples needs about 29.2 GB of memory and 1.9 GB is "
                                  "free besides the results: pass a smaller --batch (e.g. --batch 316881).")
    assert main(["sample", "--num", "1000000000", "--batch", "1000", "--out", out]) == 2
    assert error_line(capsys) == ("error: 1000000000 samples take about 14.9 GB of memory until they are "
                                  "written, and 2.0 GB is free: ask for fewer with --num-samples.")


def test_memory_estimate_counts_results_generators_and_working_copies():
    kept, batch = sample_command.memory_needed(100, 10, sample_numel=2, output_numel=2, latent=False)
    assert kept == 100 * 4 * 4 and batch == 10 * (sample_command.GENERATOR_BYTES + 8 * 2 * 4)
    kept, _ = sample_command.memory_needed(10, 10, sample_numel=4 * 8 * 8, output_numel=3 * 64 * 64, latent=True)
    assert kept == 10 * (3 * 64 * 64 + 2 * 256) * 4
