"""Exact x̂0 pictures of latent runs: which steps are decoded, within what time, and the final images."""
from __future__ import annotations

import numpy as np
import pytest

from core import SamplingRequest, sample
from core.images import pixels
from core.latent_preview import DECODE_FRACTION, ExactPreviews, decode_stride
from core.recording import Later

from ..latent_fakes import latent_bundle


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def steps_of(bundle, n: int = 40, batch: int = 2):
    return list(sample(SamplingRequest(model=bundle.name, steps=str(n), batch=batch, seed=3), bundle))


def kept(value):
    """What a recorder keeps of a track value: a Later completed at once, as on the CPU."""
    return value.then(value.tensor.numpy()) if isinstance(value, Later) else value


def drive(previews, steps, clock, step_seconds, lag=False):
    """Feed the steps as a worker would, each taking `step_seconds` of the fake clock; with `lag`, each step's
    values are completed only after the next step's are queued, as a recorder does on CUDA."""
    values, queued = [], []
    for step in steps:
        clock.now += step_seconds
        queued.append(previews.track(step))
        if len(queued) > 1 + lag:
            values.append(kept(queued.pop(0)))
    return values + [kept(v) for v in queued]


def test_exact_decodes_every_step_and_the_last_one_is_the_final_sample():
    bundle = latent_bundle()
    steps = steps_of(bundle, 10)
    previews = ExactPreviews(bundle, exact=True)
    values = [kept(previews.track(s)) for s in steps]
    assert values[0] is None and all(v is not None for v in values[1:]) and previews.decoded_steps == list(range(1, 11))
    np.testing.assert_array_equal(values[5], pixels(bundle.decode(steps[5].x0)))  # x̂0 of that step, 8×8
    np.testing.assert_array_equal(previews.final_images(), bundle.decode(steps[-1].x).numpy())
    assert previews.final_images().shape == (2, 3, 8, 8)


def test_without_a_measured_cost_only_the_final_image_is_decoded_and_it_measures_the_cost():
    bundle, clock = latent_bundle(), FakeClock()
    bundle.clock, bundle.decode_seconds = clock, 0.5
    steps = steps_of(bundle, 40)
    first = ExactPreviews(bundle, clock=clock)
    drive(first, steps, clock, 1.0)
    assert first.decoded_steps == [40] and first.spent == 0.0
    assert first.cost(steps[1].x0) == pytest.approx(0.5)  # remembered for this bundle and latent shape


@pytest.mark.parametrize("lag", [False, True], ids=["at once", "timed a step later"])
@pytest.mark.parametrize("decode_seconds", [0.05, 0.5, 2.0])
def test_decoding_stays_within_its_budget_of_the_sampling_time(decode_seconds, lag):
    """Also when a decode's time is known only once the recorder completes its step (CUDA): until then its
    expected cost counts, so the decisions are the same."""
    bundle, clock = latent_bundle(), FakeClock()
    bundle.clock, bundle.decode_seconds = clock, decode_seconds
    steps = steps_of(bundle, 60)
    drive(ExactPreviews(bundle, clock=clock), steps, clock, 1.0)  # measures the cost
    clock.now = 0.0
    previews = ExactPreviews(bundle, clock=clock)
    drive(previews, steps, clock, 1.0, lag)
    paid = [i for i in previews.decoded_steps if i != 60]
    assert previews.spent == pytest.approx(decode_seconds * len(paid))
    assert DECODE_FRACTION == 0.04
    assert previews.spent <= DECODE_FRACTION * 60 * 1.0  # at most 4 % of the sampler's own time
    # and the budget is used: cheap decodes at every step, dear ones spread over the run
    assert len(paid) == {0.05: 47, 0.5: 4, 2.0: 1}[decode_seconds]
    assert max(np.diff(paid, prepend=0)) <= 60 // max(len(paid), 1) + 1


def test_frames_that_will_not_be_shown_are_not_decoded():
    bundle, clock = latent_bundle(), FakeClock()
    bundle.clock, bundle.decode_seconds = clock, 0.01
    steps = steps_of(bundle, 20)
    drive(ExactPreviews(bundle, clock=clock), steps, clock, 1.0)
    shown = {5, 9}
    previews = ExactPreviews(bundle, clock=clock, shown=lambda: len(seen) in shown)
    seen: list = []
    for step in steps:
        clock.now += 1.0
        seen.append(kept(previews.track(step)))
    assert previews.decoded_steps == [5, 9, 20]


def test_a_stopped_run_still_ends_in_decoded_images():
    bundle = latent_bundle()
    steps = steps_of(bundle, 10)[:4]
    previews = ExactPreviews(bundle)
    for step in steps:
        kept(previews.track(step))
    np.testing.assert_array_equal(previews.final_images(), bundle.decode(steps[-1].x).numpy())
    with pytest.raises(ValueError, match="before its first step"):
        ExactPreviews(bundle).final_images()


def test_decoded_previews_keep_a_run_small():
    assert decode_stride(1, 512, 512, 50) == 1
    assert decode_stride(16, 512, 512, 50) == 4  # a 4×4 grid of 128-px previews
    assert decode_stride(1, 1024, 1024, 1000) == 4  # 1001 steps of 1024² within 256 MiB
    big = latent_bundle(side=256)  # 512-px images
    step = steps_of(big, 2, batch=4)[-1]
    assert kept(ExactPreviews(big).track(step)).shape == (4, 256, 256, 3)  # a 2×2 grid near 512 px: stride 2
