"""QPM's metrics: contrastiveness, structural grounding, contrastive class pairs, the full table.

SID@k and class-independence live in :mod:`companion.metrics.interpretability`
(``diversity_at_k(..., scale_invariant=True)`` and ``class_independence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from ..batches import to_numpy


def contrastiveness(features, seed: int = 0) -> float:
    """Contrastiveness: 1 − mean_j overlap of a two-component Gaussian mixture fit to feature j.

    High when every feature is clearly on or off (two well-separated modes).
    """
    f = to_numpy(features, float)
    overlaps = []
    for j in range(f.shape[1]):
        x = f[:, j:j + 1]
        if np.ptp(x) == 0:
            overlaps.append(1.0)
            continue
        gmm = GaussianMixture(2, random_state=seed).fit(x)
        sd = np.sqrt(gmm.covariances_.reshape(-1))
        a, b = (NormalDist(float(m), float(s)) for m, s in zip(gmm.means_.reshape(-1), sd))
        overlaps.append(a.overlap(b))
    return float(1.0 - np.mean(overlaps))


def _cosine_offdiag(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    unit = X / np.where(norms > 0, norms, 1.0)
    S = unit @ unit.T
    np.fill_diagonal(S, 0.0)
    return S


def structural_grounding(weight, class_attributes, n_pairs: int = 25) -> float:
    """Structural grounding: do the classes the truth calls most similar share features in W?

    ``S_model = cos(W_c, W_c')`` and ``S_gt = cos(a_c, a_c')`` (diagonals 0); over the ``2·n_pairs``
    largest entries T of S_gt, ``SG = Σ_T S_model / Σ_T S_gt`` (the paper: 25 CUB class pairs).
    """
    W, G = to_numpy(weight, float), to_numpy(class_attributes, float)
    if W.shape[0] != G.shape[0]:
        raise ValueError(f"weight and class_attributes need one row per class; got {W.shape[0]} "
                         f"and {G.shape[0]} rows.")
    s_model, s_gt = _cosine_offdiag(W), _cosine_offdiag(G)
    n = min(2 * n_pairs, W.shape[0] * (W.shape[0] - 1))
    top = np.argsort(-s_gt.reshape(-1), kind="stable")[:n]
    denom = s_gt.reshape(-1)[top].sum()
    if denom <= 0:
        raise ValueError("class_attributes give no similar class pairs (all cosines ≤ 0).")
    return float(s_model.reshape(-1)[top].sum() / denom)


def contrastive_pairs(assignment, shared: int | None = None) -> list[tuple[int, int]]:
    """Class pairs (c, c') whose feature sets share ``shared`` features (default k − 1)."""
    W = np.asarray(assignment) != 0
    k = int(W.sum(1).max())
    shared = k - 1 if shared is None else shared
    overlap = W.astype(int) @ W.T.astype(int)
    i, j = np.nonzero(np.triu(overlap == shared, 1))
    return list(zip(i.tolist(), j.tolist()))


@dataclass(frozen=True)
class QPMMetrics:
    """The paper's table for one model: accuracy and the interpretability metrics (all in [0, 1])."""

    accuracy: float
    features_used: int
    per_class: float
    sid: float
    class_independence: float
    contrastiveness: float
    structural_grounding: float


def qpm_metrics(head, features, class_attributes, *, k: int = 5, n_pairs: int = 25,
                max_contrastive_features: int = 1000) -> QPMMetrics:
    """QPM's evaluation of a classifier head on cached test features (a ``FeatureSet`` with maps).

    ``head`` is a dense ``nn.Linear`` or a ``SparseLayer``; the features it reads (normalised for
    the sparse layer), their maps and its W enter SID@k, class-independence and contrastiveness
    (skipped, NaN, above ``max_contrastive_features`` as in the paper); W against
    ``class_attributes`` gives structural grounding.
    """
    from .interpretability import class_independence, compactness, diversity_at_k

    pooled, labels = features.pooled.float(), features.labels
    if features.maps is None:
        raise ValueError("qpm_metrics needs feature maps: extract_features(..., maps=True).")
    with torch.no_grad():
        logits = head(pooled)
        if hasattr(head, "select_maps"):
            used, maps, weight = head.normalize(pooled), head.select_maps(features.maps), head.weight
        else:
            used, maps, weight = pooled, features.maps, head.weight
    predicted = logits.argmax(1)
    comp = compactness(weight)
    many = used.shape[1] > max_contrastive_features
    return QPMMetrics(
        accuracy=float((predicted == labels).float().mean()),
        features_used=comp.features_used, per_class=comp.per_class,
        sid=diversity_at_k(maps.float(), weight.float(), predicted, k=k, scale_invariant=True),
        class_independence=class_independence(used, labels, weight.shape[0]),
        contrastiveness=float("nan") if many else contrastiveness(used),
        structural_grounding=structural_grounding(weight, class_attributes, n_pairs=n_pairs))
