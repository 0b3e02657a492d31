"""Sweeps (Qt-free): value parsing, per-cell requests, shared noise, cancel, the legend grid."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from core import Guidance, SamplingRequest, load_model
from desktop_app.compare.sweep import SweepSpec, apply_value, compose_grid, parse_seeds, parse_values, run_sweep

BASE = SamplingRequest(model="toy-gmm", steps="6", guidance=Guidance(kind="cfg", weight=1.0), label=4, batch=32)


@pytest.fixture(scope="module")
def gmm():
    return load_model("toy-gmm", device="cpu")


def test_parse_values_and_seeds():
    assert parse_values("weight", "0, 1  2.5") == (0.0, 1.0, 2.5)
    assert parse_values("steps", "10, ddim25 50") == ("10", "ddim25", "50")
    assert parse_values("steps", "10,15,20; 50") == ("10,15,20", "50")
    assert parse_values("sampler", "DDPM ddim") == ("ddpm", "ddim")
    assert parse_seeds("0-2, 7") == (0, 1, 2, 7)
    with pytest.raises(ValueError, match="must be numbers"):
        parse_values("eta", "0.1, lots")
    with pytest.raises(ValueError, match="at least one value"):
        parse_values("scale", " , ")
    with pytest.raises(ValueError, match="Cannot sweep"):
        parse_values("batch", "1")
    with pytest.raises(ValueError, match="appear once"):
        parse_seeds("1, 0-2")
    with pytest.raises(ValueError, match="runs backwards"):
        parse_seeds("3-1")


def test_values_that_cannot_apply_are_refused_before_running():
    with pytest.raises(ValueError, match="needs classifier guidance"):
        apply_value(BASE, "scale", 2.0)
    with pytest.raises(ValueError, match="needs classifier-free guidance"):
        apply_value(BASE.replace(guidance=Guidance(kind="classifier", scale=1.0)), "weight", 2.0)
    with pytest.raises(ValueError, match="only changes DDIM"):
        apply_value(BASE.replace(sampler="ddpm"), "eta", 0.5)
    with pytest.raises(ValueError, match="Unknown sampler"):
        SweepSpec(BASE, "sampler", ("ddim", "euler"), (0,))
    spec = SweepSpec(BASE.replace(guidance=Guidance(kind="both", scale=0.5, weight=1.0)), "scale", (0.0, 3.0), (5, 6))
    assert spec.request(1, 1).guidance == Guidance(kind="both", scale=3.0, weight=1.0)
    assert spec.request(1, 1).seed == 6 and spec.shape == (2, 2)
    assert spec.column_label(1) == "s = 3" and spec.row_label(0) == "seed 5"


def test_three_values_fill_three_cells_sharing_their_initial_noise(gmm):
    spec = SweepSpec(BASE, "weight", (0.0, 2.0, 5.0), (11,))
    cells = list(run_sweep(spec, gmm))
    assert [(c.row, c.col) for c in cells] == [(0, 0), (0, 1), (0, 2)]
    for c in cells[1:]:
        np.testing.assert_array_equal(c.initial, cells[0].initial)  # same seed → same x_T
        assert not np.allclose(c.result.samples, cells[0].result.samples)  # w changed the result
    assert [c.result.request.guidance.weight for c in cells] == [0.0, 2.0, 5.0]
    assert all(c.picture.shape == (256, 256, 3) for c in cells)


def test_rows_are_seeds_with_different_noise(gmm):
    cells = list(run_sweep(SweepSpec(BASE, "steps", ("4", "8"), (0, 1)), gmm))
    by_pos = {(c.row, c.col): c for c in cells}
    assert len(by_pos) == 4
    np.testing.assert_array_equal(by_pos[1, 0].initial, by_pos[1, 1].initial)
    assert not np.allclose(by_pos[0, 0].initial, by_pos[1, 0].initial)


def test_cancel_stops_between_cells(gmm):
    cancel = threading.Event()
    seen = []
    for cell in run_sweep(SweepSpec(BASE, "weight", (0.0, 1.0, 2.0), (0,)), gmm, cancel):
        seen.append(cell)
        cancel.set()
    assert len(seen) == 1


def test_compose_grid_places_cells_under_their_labels():
    red = np.zeros((128, 128, 3), np.uint8)
    red[..., 0] = 255
    out = compose_grid({(0, 1): red}, ["seed 0", "seed 1"], ["w = 0", "w = 1"], title="a title")
    assert out.dtype == np.uint8 and out.ndim == 3
    reds = np.argwhere((out == (255, 0, 0)).all(axis=-1))
    assert len(reds) == 128 * 128  # exactly one cell filled
    (top, left), (bottom, right) = reds.min(axis=0), reds.max(axis=0)
    assert right - left == 127 == bottom - top and top > 20  # one square cell under the title and the headers
    assert left > out.shape[1] // 2 - 64  # in the second column
    greys = (out == (225, 225, 225)).all(axis=-1).sum()
    assert greys == 3 * 128 * 128  # the three missing cells
