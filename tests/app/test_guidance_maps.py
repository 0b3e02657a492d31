"""The guidance maps pane: what it paints is the engine's own Δε of the selected sample, on the run's scale."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import Guidance, ModelBundle, SamplingRequest, guidance_views as V, sample
from core.images import pixels, rgb
from core.recording import Recorder

from .guided_bundle import guided_image_bundle


def record_run(request, bundle, twin=False, maps=True):
    """A run recorded as the app records it, with the guidance views' tracks; `.steps` keeps the Steps."""
    recorder = Recorder.for_bundle(request, bundle, extras=V.guidance_tracks(bundle, twin=twin, maps=maps))
    recorder.steps = []
    for step in sample(request, bundle, twin=twin, diagnostics=True):
        recorder.add(step)
        recorder.steps.append(step)
    return recorder


@pytest.fixture(scope="module")
def image_bundle():
    return guided_image_bundle()


@pytest.fixture
def maps(qtbot):
    from desktop_app.views.guidance_maps import GuidanceMaps

    widget = GuidanceMaps()
    qtbot.addWidget(widget)
    widget.resize(700, 500)
    widget.show()
    return widget


def test_maps_paint_the_engines_terms_of_the_selected_sample(maps, image_bundle):
    req = SamplingRequest("img", steps=6, batch=4, seed=3, label=0, guidance=Guidance("both", scale=3.0, weight=2.0))
    run = record_run(req, image_bundle, twin=True)
    maps.begin(run)
    assert all(maps.panes[k].isVisible() for k in ("twin_x0", "cfg_map", "classifier_map"))
    maps.set_sample(2)
    maps.show_step(3)
    step = run.steps[3]
    scale = max(s for s in run.tracks[V.MAP_SCALE][:4] if s is not None)
    assert maps.scale == scale > 0
    unit = V.map_unit(run.tracks[V.MAP_SCALE][3])  # the kept maps' resolution at step 3
    for key, term in (("cfg_map", step.cfg_term), ("classifier_map", step.classifier_term)):
        values = term[2, 0].numpy()  # the engine's own Δε of sample 2, channel 0 (one channel)
        kept = V.map_at(run.tracks, key, 3, 2)
        np.testing.assert_allclose(kept, values, atol=unit / 2 * 1.001)
        np.testing.assert_array_equal(maps.picture(key), V.colorize(kept, scale))
        i, j = np.unravel_index(np.abs(values).argmax(), values.shape)
        red, _, blue = maps.picture(key)[i, j].astype(int)
        assert (red > blue) == (values[i, j] > 0)
    np.testing.assert_array_equal(maps.picture("xt"), rgb(pixels(step.x)[2]))
    np.testing.assert_array_equal(maps.picture("twin_x0"), rgb(pixels(step.twin_x0)[2]))
    assert maps.colour_scale.labels() == (f"+{scale:.3g}", "0", f"−{scale:.3g}")
    maps.set_sample(0)  # another sample: its own terms
    kept = V.map_at(run.tracks, V.CFG_MAP, 3, 0)
    np.testing.assert_allclose(kept, step.cfg_term[0, 0].numpy(), atol=unit / 2 * 1.001)
    np.testing.assert_array_equal(maps.picture("cfg_map"), V.colorize(kept, scale))
    maps.show_step(0)  # the initial noise: no terms yet
    assert maps.picture("cfg_map") is None and maps.picture("xt") is not None


def test_the_scale_holds_for_the_whole_run(maps, image_bundle):
    req = SamplingRequest("img", steps=8, batch=2, seed=1, label=1, guidance=Guidance("cfg", weight=4.0))
    run = record_run(req, image_bundle)
    maps.begin(run)
    maps.show_step(8)
    final = maps.scale
    assert final == pytest.approx(max(run.tracks[V.MAP_SCALE][1:]))
    maps.show_step(2)  # scrubbing back keeps the run's scale
    assert maps.scale == final
    assert not maps.panes["twin_x0"].isVisible() and not maps.panes["classifier_map"].isVisible()


def test_runs_without_guidance_or_maps_say_so(maps, image_bundle):
    maps.begin(record_run(SamplingRequest("img", steps=3, batch=1), image_bundle))
    assert "no guidance" in maps.status.text()
    maps.begin(record_run(SamplingRequest("img", steps=3, batch=1, label=0, guidance=Guidance("cfg", weight=1.0)),
                    image_bundle, maps=False))
    assert "off" in maps.status.text()


def test_tile_at_finds_the_sample_under_the_mouse():
    from desktop_app.views.guidance_maps import tile_at

    # 5 samples of 8×8 in a 3-column grid with 2-px gaps: tile (r, c) starts at (2 + 10c, 2 + 10r).
    assert tile_at(2.0, 2.0, 5, (8, 8)) == 0
    assert tile_at(23.5, 5.0, 5, (8, 8)) == 2
    assert tile_at(13.0, 15.0, 5, (8, 8)) == 4
    assert tile_at(11.0, 5.0, 5, (8, 8)) is None  # the gap between tiles 0 and 1
    assert tile_at(25.0, 15.0, 5, (8, 8)) is None  # the empty sixth place
    assert tile_at(1.0, 5.0, 5, (8, 8)) is None


class _LatentBundle(ModelBundle):
    """A 'latent' model: 4 latent channels, previewed as their first three, decoded at twice the size."""

    @property
    def is_latent(self) -> bool:
        return True

    def preview(self, x):
        return x[:, :3]

    def decode(self, x):
        return torch.nn.functional.interpolate(x[:, :3], scale_factor=2)


def test_latent_models_map_the_channel_norm_over_the_picture(maps):
    base = guided_image_bundle(shape=(4, 8, 8), name="latent")
    bundle = _LatentBundle(base.name, base.config, base.model, base.classifier)
    req = SamplingRequest("latent", steps=5, batch=2, seed=2, label=2, guidance=Guidance("both", scale=2.0, weight=2.0))
    run = record_run(req, bundle)
    assert V.CFG_NORM in run.tracks and V.CFG_MAP not in run.tracks
    maps.begin(run)
    maps.set_sample(1)
    maps.show_step(4)
    assert not maps.signed and maps.colour_scale.labels()[2] == "0"
    norm = run.steps[4].cfg_term[1].norm(dim=0).numpy()  # ‖w·(ε_c − ε_u)‖ over the 4 latent channels
    kept = V.map_at(run.tracks, V.CFG_NORM, 4, 1)
    np.testing.assert_allclose(kept, norm, atol=V.map_unit(run.tracks[V.MAP_SCALE][4]) / 2 * 1.001)
    np.testing.assert_array_equal(maps.picture("cfg_map"), V.colorize(kept, maps.scale, False))
    rect = maps.panes["cfg_map"].pane.item.boundingRect()
    assert maps.panes["cfg_map"].pane.item.mapRectToParent(rect).width() == maps.extent[1] == 8
