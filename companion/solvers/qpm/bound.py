"""The Lagrangian bound of the assignment problem and the candidate filtering it makes safe."""

from __future__ import annotations

import math
import time

import numpy as np
from numpy.typing import ArrayLike


def penalty_cliques(R: np.ndarray, profit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint cliques of the penalised graph (``R`` symmetric), grown greedily from the most
    profitable features: ``(label, floor)``, clique ``label[j]`` of each feature and the least pair
    penalty ``floor[t]`` inside clique t (0 for a single feature).

    A clique grows by the unassigned feature whose smallest penalty to the members is largest,
    while that keeps ``floor · (size − 1)`` (what an extra member pays at least) from falling.
    """
    n = len(profit)
    label = np.full(n, -1)
    floors: list[float] = []
    for v in np.argsort(-profit, kind="stable"):
        if label[v] >= 0:
            continue
        members = [int(v)]
        least = np.where(label < 0, R[v], 0.0)
        least[v] = 0.0
        floor = math.inf
        while True:
            u = int(np.argmax(least))
            if least[u] <= 0 or least[u] * len(members) < min(floor, R[v].max()) * (len(members) - 1):
                break
            members.append(u)
            floor = min(floor, float(least[u]))
            least = np.minimum(least, R[u])
            least[members] = 0.0
        label[members] = len(floors)
        floors.append(floor if len(members) > 1 else 0.0)
    return label, np.asarray(floors)


def lagrangian_bound(similarity: ArrayLike, bias: ArrayLike | None = None, *, n_features: int,
                     per_class: int, incumbent: float | None = None, iterations: int = 1000,
                     redundancy: ArrayLike | None = None, penalty: float = 1.0, patience: int = 20,
                     deadline: float | None = None, cliques: bool = True
                     ) -> tuple[float, np.ndarray]:
    """Upper bound on the optimum by relaxing ``Σ_j W_cj = k`` (ν_c), ``Σ s = n_f`` (μ) and, with
    ``redundancy`` (upper-triangular or symmetric), the pair penalty (α), except for a clique
    part of it that the subproblem keeps exactly.

    The penalty is split as ``Σ_t r_t m_t(m_t − 1)/2 + Σ_ij ρ_ij s_i s_j``: disjoint cliques t of the
    penalised graph (:func:`penalty_cliques`; single features when ``cliques`` is False) with
    their least pair penalty ``r_t``, ``m_t`` selected members, and the residual ``ρ ≥ 0``. For
    multipliers ν and ``0 ≤ α_ij ≤ λ ρ_ij``, ``−λ ρ_ij s_i s_j ≤ α_ij (1 − s_i − s_j)`` on 0/1
    points, so each feature's profit is ``g_j = b_j + Σ_c max(0, A_cj − ν_c) − Σ_i α_ij`` and
    ``L(ν, α) = k Σ_c ν_c + Σ α + max_{|S| = n_f} [Σ_S g − λ Σ_t r_t m_t(m_t − 1)/2]`` bounds every
    feasible solution (uniqueness is dropped, which can only raise the maximum). The inner maximum
    is separable and concave in the m_t, so the n_f largest marginal values (a clique's m-th best
    profit minus ``λ r_t (m − 1)``) solve it exactly. Minimised by projected subgradient steps
    (Polyak steps towards ``incumbent`` when given). Returns ``(bound, reduced)``, where
    ``bound + min(0, reduced_j)`` bounds every solution that selects feature j. Any multipliers
    give a valid bound, so ``deadline`` (a ``time.perf_counter()`` value) may stop the descent
    early.
    """
    A = np.asarray(similarity, dtype=float)
    n = A.shape[1]
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=float)
    k, nf = per_class, n_features
    # start between each class's k-th and (k+1)-th best feature overall
    part = -np.sort(-A, axis=1)
    nu = part[:, k] if n > k else part[:, k - 1] - 1.0
    label, floor = np.arange(n), np.zeros(n)
    if redundancy is not None and penalty > 0:
        upper = np.triu(np.asarray(redundancy, dtype=float), 1)
        if cliques:
            profit = b + np.maximum(0.0, A - nu[:, None]).sum(0)
            label, floor = penalty_cliques(upper + upper.T, profit)
        iu, ju = np.nonzero(upper)
        same = label[iu] == label[ju]
        cap = penalty * (upper[iu, ju] - np.where(same, floor[label[iu]], 0.0))
        floor = penalty * floor
        iu, ju, cap = iu[cap > 0], ju[cap > 0], cap[cap > 0]
    else:
        iu = ju = np.zeros(0, dtype=int)
        cap = np.zeros(0)
    alpha = np.zeros(len(cap))

    def evaluate(nu, alpha):
        paid = np.bincount(iu, alpha, n) + np.bincount(ju, alpha, n)
        g = b + np.maximum(0.0, A - nu[:, None]).sum(0) - paid
        # marginal value of each feature as its clique's m-th pick, m = rank in the clique + 1
        by_clique = np.lexsort((-g, label))
        lab = label[by_clique]
        first = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        rank = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
        marginal = np.empty(n)
        marginal[by_clique] = g[by_clique] - floor[lab] * rank
        order = np.argsort(-marginal, kind="stable")
        value = k * nu.sum() + alpha.sum() + marginal[order[:nf]].sum()
        # forcing j in, with the pairs to its clique dropped (they only pay): the other n_f − 1
        # picks are worth at most the top n_f minus the smallest, so j adds at most g_j − μ
        mu = marginal[order[nf - 1]]
        return value, g - mu, order[:nf]

    best_value, best_reduced = math.inf, None
    step_scale, stall = 2.0, 0
    for it in range(iterations):
        if deadline is not None and it and time.perf_counter() > deadline:
            break
        value, reduced, top = evaluate(nu, alpha)
        if value < best_value - 1e-9 * max(1.0, abs(value)):
            best_value, best_reduced, stall = value, reduced, 0
        else:
            stall += 1
            if stall >= patience:  # Held–Karp rule: halve the step after a run without progress
                step_scale, stall = step_scale / 2, 0
                if step_scale < 1e-6:
                    break
        grad = k - (A[:, top] > nu[:, None]).sum(1)
        chosen = np.zeros(n, dtype=bool)
        chosen[top] = True
        pair_grad = 1.0 - chosen[iu] - chosen[ju]
        # projected: components pushing α out of [0, λρ] do not move
        pair_grad[((alpha <= 0) & (pair_grad > 0)) | ((alpha >= cap) & (pair_grad < 0))] = 0.0
        norm2 = float(grad @ grad + pair_grad @ pair_grad)
        if norm2 == 0:
            break
        target = incumbent if incumbent is not None else best_value - 0.01 * abs(best_value)
        step = step_scale * max(value - target, 1e-9) / norm2
        nu = nu - step * grad
        alpha = np.clip(alpha - step * pair_grad, 0.0, cap)
    return best_value, best_reduced


def candidate_features(bound: float, reduced: np.ndarray, incumbent: float, selected: np.ndarray,
                       n_features: int, n_candidates: int | None) -> tuple[np.ndarray, float]:
    """Features the MILP keeps, and the best objective any solution using a dropped one can reach.

    Reduced-cost fixing: a feature j with ``bound + min(0, reduced_j) < incumbent`` is in no better
    solution; keep the rest, or the ``n_candidates`` most profitable when given (the dropped ones
    are then covered by the returned bound). The incumbent's own features are always kept.
    """
    if n_candidates is None:
        keep = np.flatnonzero(bound + np.minimum(0.0, reduced) >= incumbent)
    else:
        if n_candidates < n_features:
            raise ValueError(f"n_candidates ({n_candidates}) must be at least n_features "
                             f"({n_features}).")
        keep = np.argsort(-reduced, kind="stable")[:n_candidates]
    keep = np.union1d(keep, selected).astype(int)
    dropped = np.setdiff1d(np.arange(len(reduced)), keep)
    dropped_bound = (bound + np.minimum(0.0, reduced[dropped])).max() if len(dropped) else -math.inf
    return keep, float(dropped_bound)
