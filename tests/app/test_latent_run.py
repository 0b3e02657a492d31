"""A latent model in the window: fast previews of x_t, VAE-decoded x̂0 where it is paid for, the final
images always decoded, and the decoded previews kept by saved runs."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF

from core import sample
from core.images import pixels
from core.runs import X0_DECODED, read_run
from desktop_app.run.trajectory import preview_grid

from ..latent_fakes import latent_bundle
from .conftest import RUN_TIMEOUT_MS, tiny_bundle


def run(qtbot, window):
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as done:
        assert window.start_run()
    return done.args[0]


def test_exact_decode_every_step_shows_the_vae_pictures_in_both_panes(qtbot, window, tmp_path):
    bundle = latent_bundle()
    window.set_bundle(bundle)
    box = window.views.exact_decode_box
    assert box.isVisibleTo(window) and not box.isChecked()
    box.setChecked(True)
    window.session.update(steps="6", batch_images=2, seed=5)
    result = run(qtbot, window)
    steps = list(sample(window.session.request(), bundle))
    final = bundle.decode(steps[-1].x)
    np.testing.assert_array_equal(result.samples, final.numpy())  # the result is the decoded images
    last = preview_grid(pixels(final))
    np.testing.assert_array_equal(window.views.image_panes[1].image, last)
    np.testing.assert_array_equal(window.views.image_panes[0].image, last)
    label = window.views.step_label  # beside the VAE checkbox, the step's label keeps room for the noise level
    window.resize(1500, 950)
    qtbot.waitUntil(lambda: label.width() > 0 and window.width() == 1500)
    assert label.text().endswith("noise √(1−ᾱ) = 0.010") and label.fontMetrics().horizontalAdvance(label.text()) <= label.width()
    maps = window.guidance.maps  # sample 0 in the guidance dock: the decoded x̂0 fills the x_t preview's place
    np.testing.assert_array_equal(maps.picture("xt"), last[2:10, 2:10])  # the last step's x_t is the result
    window.views.slider.setValue(3)
    np.testing.assert_array_equal(window.views.image_panes[1].image, preview_grid(pixels(bundle.decode(steps[3].x0))))
    np.testing.assert_array_equal(window.views.image_panes[0].image, preview_grid(pixels(bundle.preview(steps[3].x))))
    np.testing.assert_array_equal(maps.picture("x0"), pixels(bundle.decode(steps[3].x0))[0])
    np.testing.assert_array_equal(maps.picture("xt"), pixels(bundle.preview(steps[3].x))[0])
    covers = {key: maps.panes[key].pane.item.mapRectToView(maps.panes[key].pane.item.boundingRect())
              for key in ("xt", "x0")}
    assert covers["x0"] == covers["xt"] == QRectF(0, 0, *maps.extent[::-1])
    assert maps.panes["x0"].pane.view.viewRange() == maps.panes["xt"].pane.view.viewRange()
    saved = window.results.save_to(tmp_path / "latent.png")
    reopened = read_run(saved.run)
    decoded = reopened.track(X0_DECODED)
    assert decoded[0] is None and all(v is not None for v in decoded[1:])
    np.testing.assert_array_equal(decoded[3], pixels(bundle.decode(steps[3].x0)))


def test_without_exact_decoding_a_first_run_decodes_only_its_final_images(qtbot, window):
    bundle = latent_bundle(name="fresh-latent")
    window.set_bundle(bundle)
    window.session.update(steps="6", batch_images=2, seed=5, exact_decode=False)
    result = run(qtbot, window)
    assert bundle.decode_calls == 1 and result.samples.shape == (2, 3, 8, 8)
    steps = list(sample(window.session.request(), bundle))
    window.views.slider.setValue(3)
    np.testing.assert_array_equal(window.views.image_panes[1].image, preview_grid(pixels(bundle.preview(steps[3].x0))))
    assert [v is None for v in result.track(X0_DECODED)] == [True] * 6 + [False]
    window.set_bundle(tiny_bundle((3, 8, 8), name="pixels"))
    assert not window.views.exact_decode_box.isVisibleTo(window)
    assert "exactly at every step already" in window.session.availability()["exact_decode"]
