"""Schedules and respacing against hand-computed values."""
import math

import numpy as np
import pytest

from core.schedule import Schedule, cosine_betas, linear_betas, parse_respacing


def test_linear_betas_endpoints_scale_with_T():
    assert linear_betas(1000)[[0, -1]] == pytest.approx([1e-4, 0.02])
    assert linear_betas(100)[[0, -1]] == pytest.approx([1e-3, 0.2])
    assert np.diff(linear_betas(10)).std() < 1e-15  # evenly spaced


def test_cosine_betas_follow_the_alpha_bar_formula():
    T = 50
    abar = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = cosine_betas(T)
    assert betas[0] == pytest.approx(1 - abar(1) / abar(0), rel=1e-12)
    assert betas[20] == pytest.approx(1 - abar(21) / abar(20), rel=1e-12)
    assert betas[-1] == 0.999  # clipped: ᾱ(T) is 0
    assert np.cumprod(1 - betas)[30] == pytest.approx(abar(31) / abar(0), rel=1e-9)


@pytest.mark.parametrize(
    "spec, T, expected",
    [
        ("10", 100, list(range(0, 100, 11))),  # stride (100−1)/(10−1) = 11
        ("ddim10", 100, list(range(0, 100, 10))),
        ("2,3", 10, [0, 4, 5, 7, 9]),  # sections [0,5) and [5,10): strides 4 and 2
        ("1,1", 10, [0, 5]),
        ("3", 10, [0, 4, 9]),  # stride 4.5: round(4.5) = 4, as Python (and guided-diffusion) rounds
        ("ddim25", 1000, list(range(0, 1000, 40))),
        (7, 7, list(range(7))),
    ],
)
def test_respacing_keeps_hand_computed_timesteps(spec, T, expected):
    assert parse_respacing(spec, T) == expected


@pytest.mark.parametrize("spec", ["ddim7", "11", "4,4,4", "abc", "0", "ddimx"])
def test_impossible_respacing_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="(?i)respacing|steps"):
        parse_respacing(spec, 10)


def test_respaced_betas_preserve_alpha_bar_at_kept_steps():
    base = Schedule.from_name("linear", 1000)
    spaced = base.respace("10,15,20")
    kept = spaced.timesteps
    assert len(kept) == 45
    np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12)
    # β_i = 1 − ᾱ_{S_i}/ᾱ_{S_{i−1}}, checked at one step by hand
    i = 7
    assert spaced.betas[i] == pytest.approx(1 - base.alphas_cumprod[kept[i]] / base.alphas_cumprod[kept[i - 1]])
    assert spaced.betas[0] == pytest.approx(base.betas[0])


def test_step_coefficients_match_the_posterior_formulas():
    s = Schedule.from_name("linear", 1000).respace("ddim50")
    c = s.coefficients(10)
    abar, abar_prev, beta = s.alphas_cumprod[10], s.alphas_cumprod[9], s.betas[10]
    assert c.timestep == 200
    assert c.posterior_variance == pytest.approx((1 - abar_prev) / (1 - abar) * beta)
    c_x0, c_xt = c.posterior_mean_coefs
    assert c_x0 == pytest.approx(math.sqrt(abar_prev) * beta / (1 - abar))
    assert c_xt == pytest.approx(math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar))
    # At step 0 the log-variance and fixed_large variance use β̃ of step 1, as guided-diffusion does.
    c0 = s.coefficients(0)
    assert c0.posterior_variance == 0.0
    assert c0.posterior_log_variance == pytest.approx(math.log(s.posterior_variance[1]))
    assert c0.large_variance == pytest.approx(s.posterior_variance[1])
    assert s.coefficients(5).large_variance == pytest.approx(s.betas[5])
