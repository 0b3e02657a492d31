"""The numbers behind the guidance views: maps are the engine's own terms, arrows follow the analytic score."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, guidance_views as V, sample
from core.images import pixels
from core.models import build_network
from core.recording import Recorder


def test_term_map_of_one_channel_is_the_term_itself_and_channels_average_or_norm():
    term = torch.randn(3, 1, 5, 4)
    assert torch.equal(V.term_map(term), term[:, 0])
    rgb = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(V.term_map(rgb), rgb.mean(1), atol=0, rtol=0)
    latent = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(V.term_map(latent, latent=True), latent.norm(dim=1), atol=0, rtol=0)
    with pytest.raises(ValueError, match="image-shaped"):
        V.term_map(torch.randn(4, 2))


def test_block_mean_and_stride():
    maps = torch.arange(2 * 5 * 4, dtype=torch.float32).reshape(2, 5, 4)
    assert V.block_mean(maps, 1) is maps
    out = V.block_mean(maps, 2)
    assert out.shape == (2, 3, 2)
    assert out[1, 0, 1] == maps[1, 0:2, 2:4].mean()
    assert out[0, 2, 0] == maps[0, 4, 0:2].mean()  # the edge row is padded with itself
    assert V.map_stride(16, 32, 32, 50) == 1
    stride = V.map_stride(4, 256, 256, 250)
    assert 2 * 251 * 4 * math.ceil(256 / stride) ** 2 * 4 <= V.MAP_BUDGET < 2 * 251 * 4 * (256 // (stride - 1)) ** 2 * 4


def test_kept_maps_are_codes_of_their_steps_scale_and_read_back_within_half_a_level():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    maps[0, 0, 0, 0] = 50.0  # far beyond the scale: kept at the end of the range
    scale = V.robust_scale([maps])
    codes = V.encode_maps(maps, scale)
    assert codes.dtype == np.int8 and codes.shape == maps.shape and codes[0, 0, 0, 0] == V.MAP_LEVELS
    unit = V.map_unit(scale)
    assert unit == pytest.approx(V.MAP_RANGE * scale / V.MAP_LEVELS)
    tracks = {V.CFG_MAP: [None, codes[0]], V.MAP_SCALE: [None, scale]}
    got = V.map_at(tracks, V.CFG_MAP, 1, 2)
    inside = np.abs(maps[0, 2]) <= V.MAP_RANGE * scale
    assert np.abs(got - maps[0, 2])[inside].max() <= unit / 2 + 1e-6
    np.testing.assert_allclose(np.abs(got[~inside]), V.MAP_RANGE * scale, rtol=1e-6)
    assert V.map_at(tracks, V.CFG_MAP, 1, 0)[0, 0] == pytest.approx(V.MAP_RANGE * scale)
    assert V.map_at(tracks, V.CFG_MAP, 0, 0) is None and V.map_at(tracks, V.CLASSIFIER_MAP, 1, 0) is None
    np.testing.assert_array_equal(V.map_at({V.CFG_MAP: [maps[0]]}, V.CFG_MAP, 0, 1), maps[0, 1])  # older run files: float32 as kept
    assert not V.encode_maps(maps, 0.0).any()  # no scale (the terms were all zero): all codes zero


def test_colours_are_diverging_and_symmetric():
    values = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0, np.nan]])
    rgb = V.colorize(values, scale=2.0)
    assert tuple(rgb[0, 0]) == (33, 102, 172) and tuple(rgb[0, 4]) == (178, 24, 43)  # blue ... red
    assert tuple(rgb[0, 2]) == (247, 247, 247) == tuple(rgb[0, 5])  # zero (and NaN) white
    assert tuple(V.colorize(np.array([[5.0]]), 2.0)[0, 0]) == (178, 24, 43)  # beyond the scale: the end colour
    assert rgb[0, 1, 2] > rgb[0, 1, 0] and rgb[0, 3, 0] > rgb[0, 3, 2]  # −1 bluish, +1 reddish
    mags = V.colorize(np.array([[0.0, 3.0]]), 3.0, signed=False)
    assert tuple(mags[0, 0]) == (255, 255, 255) and tuple(mags[0, 1]) == (103, 0, 13)
    assert V.robust_scale([np.array([-1.0, 0.5]), None, np.array([3.0])], 100) == 3.0
    assert V.robust_scale([]) == 0.0


def test_rms_distance():
    a, b = torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    b[1] = 3.0
    b[0, 0, 0, 0] = 2.0
    torch.testing.assert_close(V.rms_distance(a, b), torch.tensor([1.0, 3.0]))


def test_arrow_segments_draw_shafts_and_heads():
    origins = np.array([[0.0, 0.0], [1.0, 1.0]])
    vectors = np.array([[1.0, 0.0], [0.0, 5.0]])
    seg = V.arrow_segments(origins, vectors, max_length=2.0, head=0.25).reshape(2, 6, 2)
    np.testing.assert_allclose(seg[0, :2], [[0, 0], [1, 0]])
    np.testing.assert_allclose(seg[1, :2], [[1, 1], [1, 3]])  # shortened to max_length
    for stroke in (seg[0, 3] - seg[0, 2], seg[0, 5] - seg[0, 4]):
        assert np.linalg.norm(stroke) == pytest.approx(0.25)
        assert stroke[0] < 0  # the head's strokes point back along the shaft
    assert seg[0, 3, 1] == pytest.approx(-seg[0, 5, 1])
    assert V.arrow_scale([np.array([[3.0, 4.0]]), None], spacing=1.0, percentile=100) == pytest.approx(0.9 / 5)
    grid, side = V.plane_grid((-2.0, 2.0), (-4.0, 4.0), 4)
    assert side == 1.0 and grid.shape == (32, 2)
    assert grid[:, 0].min() == -1.5 and grid[:, 1].max() == 3.5 and grid[:, 1].min() == -3.5


def test_top_classes_always_show_the_target():
    probs = np.array([0.05, 0.3, 0.1, 0.2, 0.35])
    np.testing.assert_array_equal(V.top_classes(probs, target=2, k=3), [4, 1, 3, 2])
    np.testing.assert_array_equal(V.top_classes(probs, target=1, k=3), [4, 1, 3])


def _analytic_score(mixture, points, timestep, label=None):
    abar = float(mixture.alphas_cumprod[timestep])
    offsets = points[:, None, :] - math.sqrt(abar) * mixture.means[None]
    var = abar * mixture.std**2 + 1 - abar
    logits = -offsets.square().sum(-1) / (2 * var)
    resp = logits.softmax(-1) if label is None else nn.functional.one_hot(torch.full((len(points),), label), 8).float()
    return -(resp[:, :, None] * offsets).sum(1) / var, logits.log_softmax(-1)


def _cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_field_arrows_on_the_mixture_point_along_the_analytic_score(gmm):
    points, _ = V.plane_grid((-2.0, 2.0), (-2.0, 2.0), 11)
    x = torch.from_numpy(points)
    req = SamplingRequest("toy-gmm", steps=25, label=6, guidance=Guidance("classifier", scale=2.0))
    for k in (3, 12, 24):
        timestep = gmm.sampling_schedule("25").coefficients(25 - k).timestep
        model, guidance = V.field_vectors(req, gmm, points, k)
        score, _ = _analytic_score(gmm.model, x, timestep)
        assert _cosines(model, score).min() > 0.9999
        # The classifier arrows follow ∇log p(y|x_t), y = 6, from the exact posterior.
        x_in = x.clone().requires_grad_(True)
        _, log_post = _analytic_score(gmm.model, x_in, timestep)
        (grad,) = torch.autograd.grad(log_post[:, 6].sum(), x_in)
        strong = grad.norm(dim=1) > 1e-3
        assert _cosines(guidance[strong], grad[strong]).min() > 0.9999
    cfg = SamplingRequest("toy-gmm", steps=25, label=6, guidance=Guidance("cfg", weight=3.0))
    model, guidance = V.field_vectors(cfg, gmm, points, 12)
    timestep = gmm.sampling_schedule("25").coefficients(13).timestep
    conditional, _ = _analytic_score(gmm.model, x, timestep, label=6)
    unconditional, _ = _analytic_score(gmm.model, x, timestep)
    assert _cosines(model, conditional).min() > 0.9999  # under CFG the model's own field is ε_c's
    # −Δε = w·σ·(s_c − s_u): the guidance arrows follow the difference of the two scores.
    assert _cosines(guidance, conditional - unconditional).min() > 0.9999
    assert V.field_vectors(cfg.replace(guidance=Guidance("none")), gmm, points, 12)[1] is None


class _MeanClassifier(nn.Module):
    """A classifier of 3 classes from the image mean: logits (m, −m, 0)·(1 + t/1000)."""

    def forward(self, x, t):
        m = x.flatten(1).mean(1) * (1 + t.float() / 1000)
        return torch.stack([m, -m, torch.zeros_like(m)], 1) * 4


@pytest.fixture(scope="module")
def image_bundle():
    network = {"image_size": 8, "in_channels": 1, "model_channels": 32, "out_channels": 1, "num_res_blocks": 1,
               "attention_resolutions": [], "channel_mult": [1, 2], "num_classes": 4}
    torch.manual_seed(1)
    config = ModelConfig("unet", (1, 8, 8), network=network, num_classes=3, null_label=True)
    return ModelBundle("img", config, build_network("unet", network).eval(), _MeanClassifier())


def test_map_tracks_are_the_engines_own_terms(image_bundle):
    req = SamplingRequest("img", steps=6, batch=3, seed=0, label=2, guidance=Guidance("both", scale=3.0, weight=2.0))
    recorder = Recorder.for_bundle(req, image_bundle, extras=V.guidance_tracks(image_bundle, twin=True))
    for step in sample(req, image_bundle, twin=True, diagnostics=True):
        index = recorder.add(step)
        got = {name: values[index] for name, values in recorder.tracks.items()}
        if step.index == 0:
            assert got[V.CFG_MAP] is None and got[V.CLASSIFIER_MAP] is None and got[V.MAP_SCALE] is None
            continue
        terms = np.stack([step.cfg_term[:, 0].numpy(), step.classifier_term[:, 0].numpy()])
        assert got[V.MAP_SCALE] == pytest.approx(np.percentile(np.abs(terms), V.SCALE_PERCENTILE))
        np.testing.assert_array_equal(got[V.CFG_MAP], V.encode_maps(terms, got[V.MAP_SCALE])[0])
        np.testing.assert_array_equal(got[V.CLASSIFIER_MAP], V.encode_maps(terms, got[V.MAP_SCALE])[1])
        np.testing.assert_array_equal(got[V.TWIN_X0], pixels(step.twin_x0))
        np.testing.assert_allclose(got[V.TWIN_DISTANCE], (step.x - step.twin_x).flatten(1).square().mean(1).sqrt())
        probs = step.log_probs.exp().numpy()
        assert got[V.CLASS_PROBS].dtype == np.uint8
        np.testing.assert_allclose(V.probs_of(got[V.CLASS_PROBS]), probs, atol=0.5 / 255 + 1e-7)
        np.testing.assert_allclose(got[V.CLASS_SHARES], probs.mean(0), rtol=1e-6)
    assert got[V.TWIN_DISTANCE].min() > 0
    points = V.guidance_tracks(ModelBundle("p", ModelConfig("gmm", (2,)), nn.Identity()), twin=True)
    assert V.CFG_MAP not in points and V.TWIN_X0 in points  # maps only for images


def test_a_lagging_recorder_completes_each_step_when_the_next_is_added_and_records_the_same(image_bundle):
    """With `lag` (CUDA's default) a step's host half waits for the next step: `add` completes the step before,
    `flush` the last, and every track (previews, curves, maps, twin, class shares) is what it is without lag."""
    req = SamplingRequest("img", steps=6, batch=3, seed=0, label=2, guidance=Guidance("both", scale=3.0, weight=2.0))
    steps = list(sample(req, image_bundle, twin=True, diagnostics=True))
    recorders = {lag: Recorder.for_bundle(req, image_bundle, lag=lag,
                                          extras=V.guidance_tracks(image_bundle, twin=True)) for lag in (False, True)}
    completed = [recorders[True].add(step) for step in steps]
    assert completed == [None, 0, 1, 2, 3, 4, 5] and len(recorders[True]) == 6
    assert recorders[True].flush() == 6 and recorders[True].flush() is None and len(recorders[True]) == 7
    assert [recorders[False].add(step) for step in steps] == list(range(7))
    same, lagged = recorders[False].tracks, recorders[True].tracks
    assert same.keys() == lagged.keys()
    for name in set(same) - {"elapsed"}:
        for a, b in zip(same[name], lagged[name], strict=True):
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=name)
    assert all(isinstance(v, np.ndarray) for v in lagged[V.CFG_MAP][1:])


def test_a_long_runs_per_sample_probs_keep_to_their_budget_and_its_class_shares_to_every_step(gmm, monkeypatch):
    """p(k | x_t) of each sample is kept at steps `every` apart (and the last) so that the run's rows fit
    PROBS_BUDGET; the batch's shares, which the class-share plot draws, are kept at every step."""
    req = SamplingRequest("toy-gmm", steps=100, batch=50, seed=0, label=1, guidance=Guidance("classifier", scale=1.0))
    classes = gmm.num_targets
    monkeypatch.setattr(V, "PROBS_BUDGET", 10 * 50 * classes)  # ten steps' rows
    recorder = Recorder.for_bundle(req, gmm, extras=V.guidance_tracks(gmm))
    steps = []
    for step in sample(req, gmm, diagnostics=True):
        recorder.add(step)
        steps.append(step)
    kept = [i for i, row in enumerate(recorder.tracks[V.CLASS_PROBS]) if row is not None]
    assert kept == [1, *range(12, 100, 11), 100]  # every = ⌈101 / 10⌉ = 11 steps; the last always
    assert sum(recorder.tracks[V.CLASS_PROBS][i].nbytes for i in kept[:-1]) <= V.PROBS_BUDGET
    for i in kept:
        np.testing.assert_allclose(V.probs_of(recorder.tracks[V.CLASS_PROBS][i]), steps[i].log_probs.exp().numpy(),
                                   atol=0.5 / 255 + 1e-7)
    shares = recorder.tracks[V.CLASS_SHARES]
    assert shares[0] is None and all(shares[i] is not None for i in range(1, 101))
    np.testing.assert_allclose(V.class_shares(recorder.tracks, 101)[37], steps[37].log_probs.exp().mean(0).numpy(),
                               rtol=1e-6)
    older = {V.CLASS_PROBS: [None, np.full((2, 3), 0.25, np.float32)]}  # a run file from before the shares
    np.testing.assert_allclose(V.class_shares(older, 2)[1], [0.25, 0.25, 0.25])


@pytest.mark.parametrize("case", ["mnist", "toy"])
def test_run_files_recorded_as_the_app_records_keep_to_the_issues_budgets(case, gmm, tmp_path):
    """With the guidance views' tracks (maps on): 16 MNIST digits × 50 DDIM steps with CFG ≤ 2 MB, 1000 points ×
    1000 DDPM steps with classifier guidance ≤ 8 MB (float32 maps and p(k | x_t) made them 4 and 35 MB)."""
    from core import load_model
    from core.runs import read_run, write_run

    if case == "mnist":
        bundle = load_model("mnist-cfg", "cpu")
        req = SamplingRequest("mnist-cfg", steps="50", batch=16, label=tuple(range(10)) + (0,) * 6, seed=0,
                              guidance=Guidance("cfg", weight=2.0))
        budget = 2_000_000
    else:
        bundle = gmm
        req = SamplingRequest("toy-gmm", sampler="ddpm", steps="1000", batch=1000, label=3, seed=0,
                              guidance=Guidance("classifier", scale=1.0))
        budget = 8_000_000
    recorder = Recorder.for_bundle(req, bundle, extras=V.guidance_tracks(bundle))
    for step in sample(req, bundle, diagnostics=True):
        recorder.add(step)
    path = write_run(tmp_path / "r.run.npz", recorder.result(True))
    assert path.stat().st_size <= budget
    again = read_run(path)
    assert again.track(V.CLASS_SHARES)[-1] is not None and again.track(V.CLASS_PROBS)[-1] is not None
    if case == "mnist":
        assert again.track(V.CFG_MAP)[25].dtype == np.int8 and again.track("xt")[25].shape == (16, 32, 32, 1)


def test_time_a_run_is_held_does_not_count_as_its_own(gmm):
    req = SamplingRequest("toy-gmm", steps=3)
    recorder = Recorder.for_bundle(req, gmm)
    steps = sample(req, gmm)
    recorder.add(next(steps))
    recorder.exclude(1000.0)  # as if held for 1000 s between steps 0 and 1
    recorder.add(next(steps))
    elapsed = recorder.tracks["elapsed"]
    assert elapsed[0] >= 0 and -1000 < elapsed[1] < -990
    assert recorder.result(False).seconds < -990


def test_guidance_tracks_survive_the_run_file(image_bundle, tmp_path):
    from core.runs import read_run, write_run

    req = SamplingRequest("img", steps=5, batch=2, seed=4, label=1, guidance=Guidance("both", scale=2.0, weight=1.0))
    recorder = Recorder.for_bundle(req, image_bundle, extras=V.guidance_tracks(image_bundle, twin=True))
    for step in sample(req, image_bundle, twin=True, diagnostics=True):
        recorder.add(step)
    result = recorder.result(True)
    again = read_run(write_run(tmp_path / "r.run.npz", result))
    for name in (V.CFG_MAP, V.CLASSIFIER_MAP, V.TWIN_X0, V.TWIN_DISTANCE, V.CLASS_PROBS, V.CLASS_SHARES):
        saved, read = result.track(name), again.track(name)
        assert read[0] is None or name in (V.TWIN_X0, V.TWIN_DISTANCE)  # step 0 has no terms, no p(k | x_t)
        for a, b in zip(saved[1:], read[1:]):
            np.testing.assert_array_equal(a, b)
    assert [again.track(V.MAP_SCALE)[k] for k in range(1, 6)] == pytest.approx(list(result.track(V.MAP_SCALE)[1:]))
