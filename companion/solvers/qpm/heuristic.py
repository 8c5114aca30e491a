"""The incumbent: greedy selection, 1-swap and iterated swap search, deduplication of signatures."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Collection, Iterator

import numpy as np

from .problem import assignment_objective, signature_groups


def top_k(A: np.ndarray, selected: np.ndarray, k: int) -> np.ndarray:
    """Each class's k most similar selected features (ties → lower index), as a 0/1 matrix."""
    sub = A[:, selected]
    order = np.lexsort((np.broadcast_to(np.arange(len(selected)), sub.shape), -sub), axis=1)
    W = np.zeros(A.shape, dtype=np.int8)
    rows = np.arange(A.shape[0])[:, None]
    W[rows, selected[order[:, :k]]] = 1
    return W


def subsets_by_value(values: np.ndarray, k: int) -> Iterator[tuple[tuple[int, ...], float]]:
    """Yield index tuples of k-subsets in order of decreasing value sum (best-first search)."""
    order = np.argsort(-values, kind="stable")
    v = values[order]
    n = len(v)
    start = tuple(range(k))
    heap = [(-v[list(start)].sum(), start)]
    seen = {start}
    while heap:
        neg, pos = heapq.heappop(heap)
        yield tuple(int(order[p]) for p in pos), -neg
        for i in range(k):
            nxt = pos[i] + 1
            if nxt < n and (i == k - 1 or nxt < pos[i + 1]):
                cand = pos[:i] + (nxt,) + pos[i + 1:]
                if cand not in seen:
                    seen.add(cand)
                    heapq.heappush(heap, (-v[list(cand)].sum(), cand))


def deduplicate(W: np.ndarray, A: np.ndarray, selected: np.ndarray, k: int,
                frozen: Collection[int] = ()) -> np.ndarray:
    """Give duplicated classes their best unused k-subset of the selected features (cheapest first).

    Classes in ``frozen`` keep their rows; duplicates among frozen classes alone are left in place.
    """
    W = W.copy()
    while True:
        dup = signature_groups(W)
        if not dup:
            return W
        used = {row.tobytes() for row in W}
        best = None
        for group in dup:
            for c in group:
                if c in frozen:
                    continue
                for subset, value in subsets_by_value(A[c, selected], k):
                    row = np.zeros(W.shape[1], dtype=np.int8)
                    row[selected[list(subset)]] = 1
                    if row.tobytes() not in used:
                        loss = float(A[c] @ W[c]) - value
                        if best is None or loss < best[0]:
                            best = (loss, c, row)
                        break
        if best is None:
            return W
        W[best[1]] = best[2]


def swap_search(A: np.ndarray, R: np.ndarray, b: np.ndarray, s: np.ndarray, k: int,
                penalty: float, max_iter: int = 10_000, deadline: float | None = None
                ) -> np.ndarray:
    """Best-improvement 1-swap search on the selection ``s`` (a bool mask) until ``deadline``."""
    for _ in range(max_iter):
        if deadline is not None and time.perf_counter() > deadline:
            break
        inside, outside = np.flatnonzero(s), np.flatnonzero(~s)
        if len(outside) == 0:
            break
        sub = A[:, inside]
        part = -np.sort(-sub, axis=1)
        v_k = part[:, k - 1]
        v_k1 = part[:, k] if len(inside) > k else np.full(len(A), -np.inf)
        in_top = (sub >= v_k[:, None]).astype(float)
        # exact for distinct values: class c loses A_ci and gains max(v_{k+1}, A_cj) if i is in its
        # top-k, otherwise gains max(0, A_cj − v_k)
        out = A[:, outside]
        g1 = np.maximum(v_k1[:, None], out)
        g2 = np.maximum(0.0, out - v_k[:, None])
        delta = in_top.T @ g1 + (1 - in_top).T @ g2 - (in_top * sub).sum(0)[:, None]
        rs = R @ s.astype(float)
        delta += b[outside][None, :] - b[inside][:, None]
        delta -= penalty * (rs[outside][None, :] - R[np.ix_(inside, outside)] - rs[inside][:, None])
        i, j = np.unravel_index(np.argmax(delta), delta.shape)
        if delta[i, j] <= 1e-9:
            break
        s[inside[i]], s[outside[j]] = False, True
    return s


def greedy(A: np.ndarray, R: np.ndarray, b: np.ndarray, n_features: int, k: int,
           penalty: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Greedy forward selection by marginal objective gain (randomised among near-best if rng)."""
    n = A.shape[1]
    s = np.zeros(n, dtype=bool)
    for step in range(n_features):
        idx = np.flatnonzero(s)
        if step < k:
            gain = A.sum(0)
        else:
            v_k = -np.sort(-A[:, idx], axis=1)[:, k - 1]
            gain = np.maximum(0.0, A - v_k[:, None]).sum(0)
        gain = gain + b - penalty * (R[:, idx].sum(1) if len(idx) else 0.0)
        gain[s] = -np.inf
        if rng is not None:
            top = np.argsort(-gain)[:3]
            s[rng.choice(top[np.isfinite(gain[top])])] = True
        else:
            s[int(np.argmax(gain))] = True
    return s


def selection_value(A: np.ndarray, R: np.ndarray, b: np.ndarray, s: np.ndarray, k: int,
                    penalty: float) -> float:
    """Objective of selection ``s`` (bool mask) with each class on its top k (no uniqueness)."""
    sel = np.flatnonzero(s)
    top = -np.sort(-A[:, sel], axis=1)[:, :k]
    return float(top.sum() + b[sel].sum() - penalty * R[np.ix_(sel, sel)].sum() / 2)


def perturbed_search(A: np.ndarray, R: np.ndarray, b: np.ndarray, s: np.ndarray, k: int,
                     penalty: float, rng: np.random.Generator, deadline: float | None = None,
                     patience: int | None = None, kick: int = 4, pool: int | None = None
                     ) -> np.ndarray:
    """Iterated swap search: kick the best selection (swap 1..``kick`` selected features for
    unselected ones among the ``pool`` most promising, default 8·n_f), descend with
    :func:`swap_search`, keep it if better; stop after ``patience`` kicks without gain (default
    max(100, 20·n_f)) or at ``deadline``. ``R`` is symmetric."""
    best = s.copy()
    n_features = int(best.sum())
    patience = max(100, 20 * n_features) if patience is None else patience
    outside = len(best) - n_features
    if outside == 0 or n_features == 0:
        return best
    best_value = selection_value(A, R, b, best, k, penalty)
    nu = -np.sort(-A, axis=1)[:, min(k, A.shape[1] - 1)]
    promise = b + np.maximum(0.0, A - nu[:, None]).sum(0)
    candidates = np.argsort(-promise, kind="stable")[:min(len(best), 8 * n_features if pool is None
                                                          else pool)]
    stall = 0
    while stall < patience and (deadline is None or time.perf_counter() < deadline):
        trial = best.copy()
        inside = np.flatnonzero(trial)
        free = candidates[~trial[candidates]]
        if len(free) == 0:
            free = np.flatnonzero(~trial)
        r = int(rng.integers(1, min(kick, len(inside), len(free)) + 1))
        trial[rng.choice(inside, r, replace=False)] = False
        trial[rng.choice(free, r, replace=False)] = True
        trial = swap_search(A, R, b, trial, k, penalty, deadline=deadline)
        value = selection_value(A, R, b, trial, k, penalty)
        if value > best_value + 1e-9 * max(1.0, abs(best_value)):
            best, best_value, stall = trial, value, 0
        else:
            stall += 1
    return best


def heuristic_solution(A: np.ndarray, R: np.ndarray, b: np.ndarray, n_features: int, k: int,
                       penalty: float, unique: bool, restarts: int, seed: int,
                       deadline: float | None = None,
                       repair: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None = None,
                       explore: float | None = None
                       ) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Greedy + swap search (several randomised restarts), then an iterated swap search from the
    best start until ``explore`` (a ``perf_counter`` value; None: until it stalls) →
    (W, selected, objective, feasible).

    Restarts stop at ``deadline`` (the first start always runs). ``repair(W, selected)`` returns a
    row-repaired W that meets extra constraints, or None; the best repaired start wins, and when
    none can be repaired the best unrepaired one comes back with ``feasible=False``.
    """
    rng = np.random.default_rng(seed)
    best, best_ok = None, None
    starts = []
    for start in range(restarts + 1):
        if start and deadline is not None and time.perf_counter() > deadline:
            break
        s = greedy(A, R, b, n_features, k, penalty, rng if start else None)
        starts.append(swap_search(A, R, b, s, k, penalty, deadline=deadline))
    top = max(starts, key=lambda s: selection_value(A, R, b, s, k, penalty))
    if explore is None or time.perf_counter() < explore:
        starts.append(perturbed_search(A, R, b, top, k, penalty, rng, deadline=explore))
    for s in starts:
        sel = np.flatnonzero(s)
        W = top_k(A, sel, k)
        if unique:
            W = deduplicate(W, A, sel, k)
        value = assignment_objective(W, sel, A, np.triu(R, 1), b, penalty)
        if best is None or value > best[2]:
            best = (W, sel, value)
        if repair is not None:
            fixed = repair(W, sel)
            if fixed is not None:
                value = assignment_objective(fixed, sel, A, np.triu(R, 1), b, penalty)
                if best_ok is None or value > best_ok[2]:
                    best_ok = (fixed, sel, value)
    if repair is None:
        return (*best, True)
    return (*best_ok, True) if best_ok is not None else (*best, False)
