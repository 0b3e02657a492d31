"""The x_t pane's sample paths: a cached settled part and a live tail that together draw every step."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from desktop_app.views.field_arrows import PATH_PEN, SETTLED_STEPS, PathLayer

from .test_guidance_window import drawn_paths


def test_paths_draw_every_step_and_redraw_the_settled_part_once_per_chunk(qtbot):
    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    layer = PathLayer(plot, PATH_PEN, 5)
    assert layer.settled.cacheMode() == layer.settled.CacheMode.DeviceCoordinateCache
    trace = np.random.default_rng(0).normal(size=(3, 3 * SETTLED_STEPS + 5, 2)).cumsum(axis=1)
    settled_data = []
    for k in range(trace.shape[1]):
        layer.show(trace[:, : k + 1], key="run")
        paths = drawn_paths(layer.data())
        assert len(paths) == 3 and all(np.array_equal(p, trace[i, : k + 1]) for i, p in enumerate(paths)), k
        assert len(layer.tail.getData()[0]) <= 3 * (SETTLED_STEPS + 1 + 1)  # the tail stays short
        settled_data.append(layer.settled.getData()[0])
    # the settled curve gets new data only when a chunk of steps is complete (k = 32, 64, 96), and at the start
    changes = [k for k in range(1, len(settled_data)) if settled_data[k] is not settled_data[k - 1]]
    assert changes == [SETTLED_STEPS, 2 * SETTLED_STEPS, 3 * SETTLED_STEPS]
    layer.show(trace[:, :10], key="another run")  # another source, or stepping back: drawn from its own steps
    assert all(np.array_equal(p, trace[i, :10]) for i, p in enumerate(drawn_paths(layer.data())))
    layer.show(None)
    assert len(layer.data()) == 0
