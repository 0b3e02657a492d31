"""Fixtures for every test: nothing writes into the real user data folder."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """Point the run library (desktop_app.library, env GUIDANCE_STUDIO_DATA) and the cache of compiled networks
    (core.compiled, env GUIDANCE_STUDIO_CACHE) at per-test folders."""
    folder = tmp_path / "guidance-studio-data"
    monkeypatch.setenv("GUIDANCE_STUDIO_DATA", str(folder))
    monkeypatch.setenv("GUIDANCE_STUDIO_CACHE", str(tmp_path / "guidance-studio-cache"))  # compiled networks
    monkeypatch.setenv("GUIDANCE_STUDIO_COMPILE", "0")  # no background compiles (tests/app/test_compiling.py)
    return folder


@pytest.fixture(scope="session")
def compiled_library(tmp_path_factory):
    """The compiled library of tests/compiled_fixtures.small_unet_bundle()'s network, built once per session
    into a cache folder of its own: its path (tests copy it where they need it)."""
    from core import compiled

    from .compiled_fixtures import require_compiler, small_unet_bundle

    require_compiler()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(compiled.CACHE_ENV, str(tmp_path_factory.mktemp("compiled-cache")))
        bundle = small_unet_bundle()
        assert compiled.wanted(bundle)
        return compiled.compile_network(bundle)
