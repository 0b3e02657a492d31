"""The x_t pane's sample paths: cached settled parts and a live tail that together draw every step."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from desktop_app.views.field_arrows import PATH_PEN, SETTLED_STEPS, PathLayer

from .test_guidance_window import drawn_paths


def test_paths_draw_every_step_and_restroke_each_settled_part_once_per_chunk(qtbot):
    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    layer = PathLayer(plot, PATH_PEN, 5)
    coarse, fine = SETTLED_STEPS
    assert all(item.cacheMode() == item.CacheMode.DeviceCoordinateCache for item in layer.settled)
    trace = np.random.default_rng(0).normal(size=(3, 2 * coarse + fine + 5, 2)).cumsum(axis=1)
    settled_data: list[list] = []
    for k in range(trace.shape[1]):
        layer.show(trace[:, : k + 1], key="run")
        paths = drawn_paths(layer.data())
        assert len(paths) == 3 and all(np.array_equal(p, trace[i, : k + 1]) for i, p in enumerate(paths)), k
        assert len(layer.tail.getData()[0]) <= 3 * (fine + 1 + 1)  # the tail stays short
        assert len(layer.settled[1].getData()[0]) <= 3 * (coarse + 1 + 1)  # and so does the finer part
        settled_data.append([item.getData()[0] for item in layer.settled])
    # each part gets new data only when a chunk of its size is complete: the long part at k = 256, 512
    for part, chunk in enumerate(SETTLED_STEPS):
        changes = [k for k in range(1, len(settled_data)) if settled_data[k][part] is not settled_data[k - 1][part]]
        assert changes == list(range(chunk, trace.shape[1], chunk)), part
    layer.show(trace[:, :10], key="another run")  # another source, or stepping back: drawn from its own steps
    assert all(np.array_equal(p, trace[i, :10]) for i, p in enumerate(drawn_paths(layer.data())))
    layer.show(trace[:, :300], key="another run")
    assert all(np.array_equal(p, trace[i, :300]) for i, p in enumerate(drawn_paths(layer.data())))
    layer.show(None)
    assert len(layer.data()) == 0
