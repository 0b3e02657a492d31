"""Sample-quality metrics computed from any feature network's outputs (for MNIST: the judge).

All functions are pure and take numpy arrays or tensors of features (N, D) or class probabilities
(N, K); nothing here knows about images or models.
- FID (Heusel et al. 2017): ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2}), on feature statistics.
- IS-style score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), from the judge's probabilities.
- Precision / recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls around its
  points with radius = distance to the k-th nearest neighbour within the set; precision = share of
  generated points inside the real manifold, recall = share of real points inside the generated one.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _as_float64(a: np.ndarray | Tensor) -> np.ndarray:
    return (a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)).astype(np.float64)


def feature_statistics(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(μ (D,), Σ (D, D)) of features (N, D), N ≥ 2; Σ uses the unbiased (N − 1) normalisation."""
    f = _as_float64(features)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"Feature statistics need at least two feature vectors (N, D); got shape {f.shape}.")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues → 0)."""
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2).

    Tr((Σ1Σ2)^{1/2}) is computed as Tr((Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}), a symmetric PSD matrix with the
    same eigenvalues, so only symmetric eigen-decompositions are needed (no complex sqrtm).
    """
    mu1, mu2 = np.atleast_1d(_as_float64(mu1)), np.atleast_1d(_as_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"Mismatched statistics: μ {mu1.shape} / {mu2.shape}, Σ {sigma1.shape} / {sigma2.shape}.")
    root1 = _sqrt_psd(sigma1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * cross))


def fid(real: np.ndarray | Tensor, generated: np.ndarray | Tensor) -> float:
    """FID between two feature sets (N, D) and (M, D)."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(generated))


def inception_score(probs: np.ndarray | Tensor, eps: float = 1e-12) -> float:
    """exp(mean_x KL(p(y|x) ‖ p(y))) for class probabilities (N, K); between 1 and K."""
    p = _as_float64(probs)
    if p.ndim != 2 or len(p) < 1:
        raise ValueError(f"The score needs class probabilities of shape (N, K); got {p.shape}.")
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def _pairwise(a: Tensor, b: Tensor, chunk: int = 1024) -> Tensor:
    """Euclidean distances (len(a), len(b)) in float64, computed in row chunks."""
    return torch.cat([torch.cdist(a[i:i + chunk], b) for i in range(0, len(a), chunk)])


def knn_radii(features: Tensor, k: int) -> Tensor:
    """Distance from each point (N, D) to its k-th nearest OTHER point of the same set, (N,)."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points; got {len(features)}.")
    d = _pairwise(features, features)
    return d.kthvalue(k + 1, dim=1).values  # the 0-th neighbour is the point itself


def manifold_coverage(points: Tensor, support: Tensor, radii: Tensor) -> float:
    """Share of `points` (M, D) that lie within radius r_j of some support point j (N, D), radii (N,)."""
    inside = (_pairwise(points, support) <= radii[None, :]).any(dim=1)
    return float(inside.double().mean())


def precision_recall(real: np.ndarray | Tensor, generated: np.ndarray | Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `generated` against `real`."""
    r = torch.as_tensor(_as_float64(real))
    g = torch.as_tensor(_as_float64(generated))
    if r.ndim != 2 or g.ndim != 2 or r.shape[1] != g.shape[1]:
        raise ValueError(f"Feature sets must be (N, D) with the same D; got {tuple(r.shape)} and {tuple(g.shape)}.")
    precision = manifold_coverage(g, r, knn_radii(r, k))
    recall = manifold_coverage(r, g, knn_radii(g, k))
    return precision, recall


def class_accuracy(probs: np.ndarray | Tensor, labels: np.ndarray | Tensor) -> float:
    """Share of samples whose most probable class (N, K) equals the requested label (N,)."""
    p, y = _as_float64(probs), np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions for {len(y)} labels.")
    return float((p.argmax(axis=1) == y).mean())


def class_histogram(probs: np.ndarray | Tensor) -> np.ndarray:
    """Share of samples assigned to each class (K,), by the most probable class; sums to 1."""
    p = _as_float64(probs)
    return np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / len(p)
