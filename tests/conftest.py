"""Fixtures for every test: nothing writes into the real user data folder."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Point the run library (desktop_app.library, env GUIDANCE_STUDIO_DATA) at a per-test folder."""
    folder = tmp_path / "guidance-studio-data"
    monkeypatch.setenv("GUIDANCE_STUDIO_DATA", str(folder))
    return folder
