"""QPM's constants A, R, b from cached features, and the binary last layer built from a solution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..batches import to_numpy
from ..features import FeatureSet
from ..solvers.qpm import AssignmentResult, QPMExtension, solve_assignment
from .base import LastLayer
from .sparse import SparseLayer

BIAS_SCALE = np.sqrt(10) * 0.1  # the paper scales the locality bias b to at most √10·0.1 ≈ 0.316


def qpm_similarity(features, labels, n_classes: int | None = None) -> np.ndarray:
    """A (C×N): Pearson correlation of each feature with each class indicator, divided by max |A|.

    Constant (dead) features get 0 instead of the NaN of a zero denominator.
    """
    X = to_numpy(features, float)
    y = to_numpy(labels, int).reshape(-1)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"features must be (samples, N) with one label per sample; got features "
                         f"{X.shape} and {len(y)} labels.")
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {y.min()}..{y.max()}.")
    Y = np.eye(n_classes)[y]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    cov = Yc.T @ Xc / len(X)
    denom = np.outer(Yc.std(0), Xc.std(0))
    A = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 1e-10)
    peak = np.abs(A).max()
    return A / peak if peak > 0 else A


def qpm_redundancy(similarity) -> np.ndarray:
    """R (N×N, upper triangle): cosine similarity of the features' class profiles (columns of A).

    Divided by max |R|, negatives set to 0, diagonal and lower triangle 0, as the paper does.
    """
    A = to_numpy(similarity, float)
    norms = np.linalg.norm(A, axis=0)
    unit = A / np.where(norms > 1e-12, norms, 1.0)
    R = np.triu(unit.T @ unit, 1)
    peak = np.abs(R).max()
    R = R / peak if peak > 0 else R
    return np.clip(R, 0.0, None)


def greedy_clique(adjacency: np.ndarray, size: int, starts: int = 5) -> np.ndarray | None:
    """A clique of at least ``size`` vertices found greedily (most-connected first), or None."""
    adj = np.asarray(adjacency, dtype=bool)
    degree = adj.sum(1)
    for v in np.argsort(-degree, kind="stable")[:starts]:
        clique = [int(v)]
        cand = np.flatnonzero(adj[v])
        while len(cand):
            inner = adj[np.ix_(cand, cand)].sum(1)
            u = int(cand[np.argmax(inner)])
            clique.append(u)
            cand = cand[adj[u, cand]]
        if len(clique) >= size:
            return np.sort(np.array(clique[:size]))
    return None


def redundancy_threshold(redundancy, n_features: int, steps: int = 100):
    """τ: the lowest threshold on R that still leaves n_f features with no pair at or above τ.

    The search runs over ``steps`` quantiles of R's upper triangle (bisection; clique found
    greedily), starting from the Turán density that guarantees an n_f-clique. Returns
    ``(tau, clique)``; the clique is a penalty-free selection and a good starting point.
    """
    R = to_numpy(redundancy, float)
    n = R.shape[0]
    if n_features > n:
        raise ValueError(f"n_features ({n_features}) exceeds the number of features ({n}).")
    values = R[np.triu_indices(n, 1)]
    if n_features < 2 or len(values) == 0:
        return float(values.max(initial=0.0)) + 1.0, np.arange(n_features)
    turan = (1 - 1 / max(n_features - 1, 1)) * n / max(n - 1, 1)
    levels = np.unique(np.concatenate([np.linspace(0.0, min(turan, 1.0), steps), [1.0]]))
    taus = np.quantile(values, levels)
    taus[-1] = values.max() + 1e-9  # everything allowed: the full graph is a clique

    def clique_at(tau):
        allowed = tau > (R + R.T)
        np.fill_diagonal(allowed, False)
        return greedy_clique(allowed, n_features)

    lo, hi = 0, len(taus) - 1
    best = (float(taus[hi]), clique_at(taus[hi]))
    while lo < hi:
        mid = (lo + hi) // 2
        clique = clique_at(taus[mid])
        if clique is not None:
            best, hi = (float(taus[mid]), clique), mid
        else:
            lo = mid + 1
    return best


def qpm_penalty(redundancy, tau: float) -> np.ndarray:
    """R̃: R min–max scaled over its non-zero entries, kept only for pairs with R ≥ τ (Z_R)."""
    R = to_numpy(redundancy, float)
    nz = R[R > 0]
    if len(nz) == 0:
        return np.zeros_like(R)
    lo, hi = nz.min(), nz.max()
    scaled = (R - lo) / (hi - lo) if hi > lo else np.ones_like(R)
    return np.where((tau <= R) & (R > 0), np.clip(scaled, 0.0, None), 0.0)


def _clip_scale(x: np.ndarray) -> np.ndarray:
    """Clip outliers to the 5–95 % range, centre, and scale to at most ``BIAS_SCALE``."""
    lo, hi = np.percentile(x, [5, 95])
    x = np.clip(x, lo, hi)
    x = x - x.mean()
    peak = np.abs(x).max()
    return x / peak * BIAS_SCALE if peak > 0 else x


def qpm_locality(maps, features=None) -> np.ndarray:
    """b (N): locality bias from feature maps M (samples×N×H×W), scaled to at most ≈0.316.

    Locality of feature j: mean over images of ``max_p softmax_p(M_ij) · f_ij / Σ_j' f_ij'``.
    Features whose peak lies on the map border more often than average (share-weighted) get the
    minimum locality. The paper clips outliers to the largest MeanShift cluster; we clip to the
    5–95 % percentile range instead.
    """
    M = to_numpy(maps, float)
    if M.ndim != 4:
        raise ValueError(f"maps must be (samples, N, H, W); got shape {M.shape}.")
    n, d, h, w = M.shape
    flat = M.reshape(n, d, h * w)
    f = flat.mean(-1) if features is None else to_numpy(features, float)
    if f.shape != (n, d):
        raise ValueError(f"features must be the pooled features of the same images as the maps, "
                         f"({n}, {d}); got {f.shape}. Pass the pooled rows of exactly the images "
                         "whose maps you extracted.")
    share = f / np.maximum(f.sum(1, keepdims=True), 1e-12)
    z = flat - flat.max(-1, keepdims=True)
    soft_max = 1.0 / np.exp(z).sum(-1)  # max_p softmax = 1 / Σ_p exp(M_p − max M)
    locality = _clip_scale((soft_max * share).mean(0))
    border = np.ones((h, w), dtype=bool)
    border[1:-1, 1:-1] = False
    on_edge = border.reshape(-1)[flat.argmax(-1)]
    edge = _clip_scale(-(share * on_edge).sum(0))
    bias = np.where(edge >= 0, locality, locality.min())
    return _clip_scale(bias) if np.ptp(bias) > 0 else bias


@dataclass(frozen=True)
class QPMProblem:
    """The solver's inputs: ``similarity`` (A, scaled), ``redundancy`` (R̃ on pairs ≥ τ), ``bias`` (b)."""

    similarity: np.ndarray
    redundancy: np.ndarray
    bias: np.ndarray
    tau: float
    clique: np.ndarray
    raw_similarity: np.ndarray
    raw_redundancy: np.ndarray


def qpm_problem(features, labels, maps=None, *, n_features: int, per_class: int,
                n_classes: int | None = None, scale: bool = True,
                map_features=None) -> QPMProblem:
    """A, R̃ and b as QPM defines them, ready for ``companion.solvers.qpm.solve_assignment``.

    ``scale`` multiplies A by 1000/(k·C), the paper's weighting of Z_A against Z_R and Z_B.
    ``maps`` may belong to a subset of the images: then ``map_features`` are their pooled rows.
    """
    A = qpm_similarity(features, labels, n_classes)
    R = qpm_redundancy(A)
    tau, clique = redundancy_threshold(R, n_features)
    penalty = qpm_penalty(R, tau)
    pooled = features if map_features is None else map_features
    bias = qpm_locality(maps, pooled) if maps is not None else np.zeros(A.shape[1])
    factor = 1000.0 / (per_class * A.shape[0]) if scale else 1.0
    return QPMProblem(similarity=A * factor, redundancy=penalty, bias=bias, tau=tau,
                      clique=clique, raw_similarity=A, raw_redundancy=R)


def balanced_subset(labels, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of about ``n`` samples, drawn evenly from every class (seeded)."""
    y = to_numpy(labels, int).reshape(-1)
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = max(1, n // len(classes))
    picked = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    return np.sort(np.concatenate(picked))


def binary_layer(result: AssignmentResult, features, *, relu: bool = False) -> SparseLayer:
    """The frozen binary last layer of a QPM solution (W ∈ {0,1}, no bias, μ and σ frozen).

    ``result`` is a :class:`companion.solvers.qpm.AssignmentResult` over all D backbone features;
    ``features`` the training features (samples × D) that give μ and σ of the selected ones.
    """
    X = torch.as_tensor(to_numpy(features, float), dtype=torch.float32)
    W = np.asarray(result.assignment)
    selection = torch.as_tensor(np.asarray(result.selected), dtype=torch.long)
    if X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"features must be (samples, {W.shape[1]}) to match the assignment; got "
                         f"{tuple(X.shape)}.")
    chosen = X[:, selection]
    weight = torch.as_tensor(W[:, np.asarray(result.selected)], dtype=torch.float32)
    return SparseLayer(selection, weight, chosen.mean(0), chosen.std(0), bias=None,
                       trainable_norm=False, relu=relu)


class QPM(LastLayer):
    """QPM's last layer: A, R̃, b from the features, the binary program solved, W ∈ {0,1}.

    Fitted state: ``problem_`` (the constants), ``result_`` (the solver's ``AssignmentResult``:
    status, bound, gap …), ``assignment_`` (C × D binary) and ``layer_``. The locality bias b
    needs feature maps: those of the training features, or ``fit(..., locality=FeatureSet)``
    with the maps of a subset (e.g. :func:`balanced_subset`) when all would not fit in memory.
    """

    def __init__(self, n_features: int = 50, per_class: int = 5, *, penalty: float = 1.0,
                 unique: bool = True, solver: str = "HIGHS", time_limit: float = 60.0,
                 n_candidates: int | None = None, relu: bool = False, progress: bool = True):
        self.n_features, self.per_class, self.penalty = n_features, per_class, penalty
        self.unique, self.solver, self.time_limit = unique, solver, time_limit
        self.n_candidates, self.relu, self.progress = n_candidates, relu, progress

    def _fit(self, pooled: Tensor, labels: Tensor, maps: Tensor | None,
             locality: FeatureSet | None = None) -> None:
        if not 1 <= int(self.n_features) <= pooled.shape[1]:
            raise ValueError(f"n_features (n_f) must lie in [1, {pooled.shape[1]}], got "
                             f"{self.n_features}.")
        map_features = None
        if locality is not None:
            if locality.maps is None or locality.num_features != pooled.shape[1]:
                raise ValueError(f"locality must be a FeatureSet with maps of the same "
                                 f"{pooled.shape[1]} features.")
            maps, map_features = locality.maps, locality.pooled
        self.problem_ = qpm_problem(pooled, labels, maps, n_features=self.n_features,
                                    per_class=self.per_class, n_classes=self.n_classes_,
                                    map_features=map_features)
        self.result_ = self._solve()
        self.assignment_ = np.asarray(self.result_.assignment)
        self.layer_ = binary_layer(self.result_, pooled, relu=self.relu)

    def _solve(self, extension: QPMExtension | None = None) -> AssignmentResult:
        """The assignment for ``problem_`` (CHiQPM adds its constraints through ``extension``)."""
        return solve_assignment(
            self.problem_.similarity, self.problem_.redundancy, self.problem_.bias,
            n_features=self.n_features, per_class=self.per_class, penalty=self.penalty,
            unique=self.unique, solver=self.solver, n_candidates=self.n_candidates,
            time_limit=self.time_limit, progress=self.progress, extension=extension)
