"""The interpretability metrics QPM introduced: SID@k, class-independence, contrastiveness, grounding."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import torch
from sklearn.mixture import GaussianMixture


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def sid_at_k(maps, weight, predicted, k: int = 5) -> float:
    """SID@k, scale-invariant diversity: how many distinct places the top-k features look at.

    ``maps`` M (B×n_f×h×w) of the features the layer uses, ``weight`` W (C×n_f), ``predicted`` ĉ (B).
    Each map is divided by its mean |M| (floor 1e-5), softmaxed over positions, and
    ``SID@k = mean_i 1/k Σ_p max_{f ∈ top-k(W_ĉi)} S_if(p)`` ∈ [1/k, 1], over images whose
    predicted class has at least k non-zero weights (NaN if there is none).
    """
    M = torch.as_tensor(_np(maps))
    W = torch.as_tensor(_np(weight))
    pred = torch.as_tensor(_np(predicted)).long()
    if M.ndim != 4 or W.ndim != 2 or M.shape[1] != W.shape[1] or len(pred) != len(M):
        raise ValueError(f"maps must be (B, n_f, h, w), weight (C, n_f) and predicted (B,) with "
                         f"matching sizes; got {tuple(M.shape)}, {tuple(W.shape)}, "
                         f"{tuple(pred.shape)}.")
    rows = W[pred]
    ok = (rows != 0).sum(1) >= k
    if not ok.any():
        return float("nan")
    top = rows[ok].topk(k, dim=1).indices
    chosen = M[ok].flatten(2)[torch.arange(int(ok.sum()))[:, None], top]  # (B', k, h·w)
    scaled = chosen / chosen.abs().mean(-1, keepdim=True).clamp_min(1e-5)
    soft = scaled.softmax(-1)
    return float((soft.max(1).values.sum(-1) / k).mean())


def class_independence(features, labels, n_classes: int | None = None) -> float:
    """Class-independence: 1 − mean_j max_c (share of feature j's shifted mass in class c).

    High when features are shared concepts rather than detectors of one class.
    """
    f = _np(features)
    y = np.asarray(_np(labels), dtype=int)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    shifted = f - f.min(0)
    per_class = np.stack([shifted[y == c].sum(0) for c in range(n_classes)])
    total = per_class.sum(0)
    share = np.divide(per_class, total, out=np.full_like(per_class, 1.0 / n_classes),
                      where=total > 0)
    return float(1.0 - share.max(0).mean())


def contrastiveness(features, seed: int = 0) -> float:
    """Contrastiveness: 1 − mean_j overlap of a two-component Gaussian mixture fit to feature j.

    High when every feature is clearly on or off (two well-separated modes).
    """
    f = _np(features)
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
    W, G = _np(weight), _np(class_attributes)
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
