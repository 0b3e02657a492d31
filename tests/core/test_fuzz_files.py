"""Fuzz suite, files (tests/fuzzing.py): mutated bundles, guided-diffusion .pt files and run files are each
either opened or refused with one readable line, never a crash, and nothing on disk changes. Case
counts are sized for CI (the whole suite ~60 s); bench/fuzz.py runs many more."""
from __future__ import annotations

import pytest

from tests import fuzzing


@pytest.mark.parametrize("target, cases", [
    (fuzzing.fuzz_bundle, 100),
    (fuzzing.fuzz_pt, 60),
    (fuzzing.fuzz_run_file, 150),
])
def test_mutated_model_and_run_files_are_opened_or_refused_readably(tmp_path, target, cases):
    tally = target(tmp_path, cases, seed=0)
    assert tally.failures == []
    # some cases open: the unmutated file itself gets past the first refusal (the .pt target once never did)
    assert tally.cases == cases and tally.outcomes["refused"] > 0 and tally.outcomes["accepted"] > 0
