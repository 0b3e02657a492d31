"""Settings diff and the wipe overlay (Qt-free parts of Compare)."""
from __future__ import annotations

import numpy as np
import pytest

from core import Guidance, SamplingRequest
from desktop_app.compare.diff import differing_keys, effective_settings, format_value, setting_keys, wipe
from desktop_app.library.store import Library


def test_diff_names_exactly_the_differing_settings(tmp_path):
    lib = Library(tmp_path)
    base = SamplingRequest(model="toy-gmm", guidance=Guidance(kind="cfg", weight=1.0), label=3, batch=8)
    a = lib.add("toy-gmm", base, device="cpu")
    b = lib.add("toy-gmm", base.replace(guidance=Guidance(kind="cfg", weight=4.0)), device="cpu")
    c = lib.add("toy-gmm", base.replace(seed=2), device="cpu")
    flats = [e.flat_settings() for e in (a, b, c)]
    assert differing_keys(flats[:2]) == {"guidance.weight"}
    assert differing_keys(flats) == {"guidance.weight", "seed"}
    assert differing_keys([flats[0], flats[0]]) == set()
    assert differing_keys(flats[:1]) == set()


def test_diff_treats_lists_like_tuples_and_missing_keys_as_different():
    assert differing_keys([{"w": [0.0, 1.0], "n": 2}, {"w": (0, 1), "n": 2.0}]) == set()
    assert differing_keys([{"a": 1, "b": None}, {"a": 1}]) == {"b"}
    assert differing_keys([{"a": True}, {"a": 1}]) == {"a"}


def test_keys_are_in_display_order():
    assert setting_keys([{"zeta": 1, "seed": 0, "model": "m"}, {"guidance.kind": "cfg"}]) == [
        "model", "guidance.kind", "seed", "zeta"]
    assert format_value(2.50) == "2.5" and format_value(None) == "—" and format_value([0.0, 1.0]) == "(0, 1)"


def test_wipe_takes_left_columns_from_the_first_picture():
    a = np.full((4, 10, 3), 10, np.uint8)
    b = np.full((6, 8, 3), 200, np.uint8)
    out = wipe(a, b, 0.3, line=0)
    assert out.shape == (6, 10, 3)
    assert (out[:4, :3] == 10).all() and (out[:6, 3:8] == 200).all()
    assert (out[4:, :3] == 255).all() and (out[:, 8:] == 255).all()  # padding is white
    assert (wipe(a, b, 0.0, line=0)[:6, :8] == 200).all()
    divided = wipe(a, b, 0.5, line=2)
    assert (divided[:, 4] == 0).all() and (divided[:, 5] == 255).all()  # black and white: never a class colour
    with pytest.raises(ValueError, match="wipe position"):
        wipe(a, b, 1.5)


def test_values_that_cannot_affect_the_run_do_not_count_as_differences():
    cfg = {"guidance.kind": "cfg", "guidance.scale": 1.0, "guidance.weight": 2.0, "guidance.window": [0, 1],
           "sampler": "ddim", "eta": 0.0, "variance": None, "clip": "auto", "dynamic_percentile": 0.995}
    other_scale = {**cfg, "guidance.scale": 7.0, "dynamic_percentile": 0.9}
    assert differing_keys([effective_settings(cfg), effective_settings(other_scale)]) == set()
    classifier = {**cfg, "guidance.kind": "classifier"}
    assert differing_keys([effective_settings(cfg), effective_settings(classifier)]) == {
        "guidance.kind", "guidance.scale", "guidance.weight"}
    ddpm = effective_settings({**cfg, "sampler": "ddpm", "eta": 0.5, "variance": "fixed_large"})
    assert ddpm["eta"] is None and ddpm["variance"] == "fixed_large"
    unguided = effective_settings({**cfg, "guidance.kind": "none", "clip": "dynamic"})
    assert unguided["guidance.window"] is None and unguided["dynamic_percentile"] == 0.995


def test_differences_are_said_in_words():
    from desktop_app.compare.diff import describe_differences

    a = {"model": "toy-gmm", "guidance.kind": "cfg", "guidance.weight": 0.0, "seed": 1, "steps": "50"}
    b = {**a, "guidance.weight": 3.0}
    assert describe_differences([a, b]) == ["CFG weight w: 0 → 3"]
    c = {**a, "seed": 5, "steps": "ddim25"}
    assert describe_differences([a, b, c]) == ["steps: 50, 50, ddim25", "CFG weight w: 0, 3, 0", "seed: 1, 1, 5"]
    assert describe_differences([a, dict(a)]) == []
