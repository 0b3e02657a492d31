"""core.metrics against known answers: closed-form Fréchet distances, IS extremes, hand-made k-NN sets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import metrics


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def sqrt_2x2(m: np.ndarray) -> np.ndarray:
    """Principal square root of a 2×2 matrix with positive eigenvalues: (M + √det I)/√(tr M + 2√det)."""
    s = math.sqrt(np.linalg.det(m))
    return (m + s * np.eye(2)) / math.sqrt(np.trace(m) + 2 * s)


def test_identical_statistics_give_zero():
    mu, sigma = np.arange(5.0), random_spd(5, 0)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_shift_with_equal_covariance_is_the_squared_mean_distance():
    sigma = random_spd(6, 1)
    mu1, mu2 = np.zeros(6), np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert metrics.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(mu2 @ mu2), rel=1e-9)


def test_diagonal_covariances_match_the_closed_form():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu2 = np.array([0.0, 1.0, 2.0])
    expected = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + mu2 @ mu2)
    assert metrics.frechet_distance(np.zeros(3), np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_non_commuting_2x2_matches_an_independent_square_root():
    s1, s2 = random_spd(2, 2), random_spd(2, 3)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    expected = np.trace(s1 + s2 - 2 * sqrt_2x2(s1 @ s2))
    assert metrics.frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_sampled_gaussians_estimates_the_shift():
    rng = np.random.default_rng(4)
    shift = np.array([2.0, 0.0, -1.0, 0.0])
    real, fake = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4)) + shift
    assert metrics.fid(real, fake) == pytest.approx(5.0, abs=0.05)
    assert metrics.fid(real, rng.normal(size=(20000, 4))) < 0.01


def test_mismatched_statistics_are_a_clear_error():
    with pytest.raises(ValueError, match="Mismatched"):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="at least two"):
        metrics.feature_statistics(np.zeros((1, 3)))


def test_inception_score_extremes():
    k = 10
    confident_and_balanced = np.eye(k)[np.arange(100) % k]
    assert metrics.inception_score(confident_and_balanced) == pytest.approx(k, rel=1e-6)
    one_class = np.eye(k)[np.zeros(50, dtype=int)]
    assert metrics.inception_score(one_class) == pytest.approx(1.0, rel=1e-6)
    uniform = np.full((50, k), 1 / k)
    assert metrics.inception_score(uniform) == pytest.approx(1.0, rel=1e-6)


def test_inception_score_of_two_half_confident_classes():
    # p(y|x) = (3/4, 1/4) or (1/4, 3/4) half the time each: p(y) uniform, KL = log 2 − H(3/4).
    p = np.array([[0.75, 0.25], [0.25, 0.75]] * 10)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert metrics.inception_score(p) == pytest.approx(math.exp(math.log(2) - entropy), rel=1e-9)


def test_knn_radii_skip_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert metrics.knn_radii(points, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert metrics.knn_radii(points, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than 4 points"):
        metrics.knn_radii(points, 4)


def test_precision_recall_on_hand_made_sets():
    real = np.arange(6.0)[:, None]  # 0 … 5: with k = 1 every real ball has radius 1
    fake = np.array([[0.5], [10.0]])  # one inside the real manifold, one far outside
    precision, recall = metrics.precision_recall(real, fake, k=1)
    assert precision == 0.5
    assert recall == 1.0  # both fake balls have radius 9.5, which covers every real point


def test_precision_recall_of_a_collapsed_generator():
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    collapsed = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    precision, recall = metrics.precision_recall(grid, collapsed, k=3)
    assert precision == 1.0  # every fake point sits on the real manifold …
    assert recall == 0.01  # … but its tiny manifold (radius 0.1·√2) covers only the real point (0, 0)
    assert metrics.precision_recall(grid, grid, k=3) == (1.0, 1.0)
    far = metrics.precision_recall(grid, grid + 100.0, k=3)
    assert far == (0.0, 0.0)


def test_class_accuracy_and_histogram():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    assert metrics.class_accuracy(probs, [0, 1, 1, 2]) == 0.75
    np.testing.assert_allclose(metrics.class_histogram(probs), [0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match="4 predictions for 3 labels"):
        metrics.class_accuracy(probs, [0, 1, 2])
