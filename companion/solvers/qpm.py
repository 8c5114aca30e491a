"""QPM's class–feature assignment: choose n_f of N features and give every class k of them.

The binary program of QPM (eqs. 1–7 of the paper), in the reduced linear form used here::

    max  Σ_cj A_cj W_cj + Σ_j b_j s_j − λ Σ_{i<j} R_ij s_i s_j           (Z_A + Z_B − λ Z_R)
    s.t. W_cj ≤ s_j,  Σ_j W_cj = k  for every class c,  Σ_j s_j = n_f,
         no two rows of W equal,  W ∈ {0,1}^{C×N},  s ∈ {0,1}^N.

Once ``s`` is fixed, each class simply takes its k most similar selected features, so only ``s``
must branch: ``W`` is continuous in the MILP (its polytope is integral for fixed ``s``) except for
the classes that carry a uniqueness cut. Products ``s_i s_j`` are linearised (``y_ij ≥ s_i + s_j − 1``,
plus triangle inequalities) only for the penalised pairs (``R_ij > 0``). Uniqueness is added lazily,
as in the paper: when two classes get the same signature, the pair gets the constraint "c1 uses a
feature that c2 does not" (``Σ_j d_j ≥ 1``, ``d_j ≤ W_c1j``, ``d_j ≤ 1 − W_c2j``) and the model is
solved again. A Lagrangian bound (which also relaxes the pair penalty) gives safe candidate
pre-filtering (reduced-cost fixing) and a bound for the heuristic; a greedy/swap heuristic gives the
incumbent, which is HiGHS's cutoff and sets each class's starting window. Every round's relaxation
bounds the candidate problem, so the loop stops as soon as the gap is closed.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

SOLVERS = ("HIGHS", "SCIP", "heuristic")


class NotProvenOptimalWarning(UserWarning):
    """The returned assignment is feasible but its optimality is not proven."""


@dataclass(frozen=True)
class AssignmentResult:
    """A solution of the assignment problem with the solver's account of it.

    ``assignment`` is W (C×N, 0/1) over all N features, ``selected`` the indices j with s_j = 1.
    ``bound`` is an upper bound on the optimum, ``gap = (bound − objective) / max(|objective|, 1)``.
    """

    assignment: np.ndarray
    selected: np.ndarray
    status: str
    objective: float
    bound: float
    gap: float
    seconds: float
    n_lazy_rounds: int
    solver: str
    n_candidates: int = 0
    history: tuple = field(default=(), repr=False)

    @property
    def proven_optimal(self) -> bool:
        """True when the solver proved the gap closed (within its tolerance)."""
        return self.status == "optimal"

    def class_features(self) -> list[np.ndarray]:
        """The k feature indices of every class (row c of W)."""
        return [np.flatnonzero(row) for row in self.assignment]


# ----------------------------------------------------------------------------- input checks


def _as_problem(similarity, redundancy, bias, n_features: int, per_class: int, penalty: float,
                unique: bool):
    """Validate the inputs and return float arrays ``A (C,N)``, symmetric ``R (N,N)``, ``b (N,)``."""
    A = np.asarray(similarity, dtype=float)
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"similarity (A) must be a 2-D array of shape (classes, features); got "
                         f"shape {A.shape}.")
    n_classes, n_all = A.shape
    if not np.all(np.isfinite(A)):
        raise ValueError(f"similarity (A) contains {int((~np.isfinite(A)).sum())} NaN/inf entries; "
                         "dead (constant) features give NaN correlations: drop them or use "
                         "companion.models.qpm.qpm_similarity, which maps them to 0.")
    if redundancy is None:
        R = np.zeros((n_all, n_all))
    else:
        R = np.asarray(redundancy, dtype=float)
        if R.shape != (n_all, n_all):
            raise ValueError(f"redundancy (R) must have shape ({n_all}, {n_all}) to match A; got "
                             f"{R.shape}.")
        if not np.all(np.isfinite(R)) or (R < 0).any():
            raise ValueError("redundancy (R) must be finite and non-negative (the paper clips "
                             "negative similarities to 0); got negative or NaN entries.")
        R = np.triu(R, 1)
        R = R + R.T
    if bias is None:
        b = np.zeros(n_all)
    else:
        b = np.asarray(bias, dtype=float).reshape(-1)
        if b.shape != (n_all,) or not np.all(np.isfinite(b)):
            raise ValueError(f"bias (b) must be a finite vector of length {n_all}; got shape "
                             f"{np.shape(bias)}.")
    for name, value in (("n_features", n_features), ("per_class", per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if per_class > n_features:
        raise ValueError(f"per_class (k={per_class}) cannot exceed n_features (n_f={n_features}): "
                         "a class cannot use more features than are selected.")
    if n_features > n_all:
        raise ValueError(f"n_features (n_f={n_features}) exceeds the number of candidate features "
                         f"(N={n_all}); choose n_f ≤ N.")
    if unique and math.comb(n_features, per_class) < n_classes:
        raise ValueError(f"Unique class signatures are impossible: only C({n_features}, {per_class}) "
                         f"= {math.comb(n_features, per_class)} distinct {per_class}-subsets exist "
                         f"for {n_classes} classes. Increase n_features or per_class, or pass "
                         "unique=False.")
    if not np.isfinite(penalty) or penalty < 0:
        raise ValueError(f"penalty (λ) must be a finite non-negative number; got {penalty!r}.")
    return A, R, b


# ----------------------------------------------------------------------------- evaluation


def assignment_objective(assignment, selected, similarity, redundancy=None, bias=None,
                         penalty: float = 1.0) -> float:
    """Z_A + Z_B − λ Z_R of a solution (``redundancy`` upper-triangular or symmetric)."""
    W = np.asarray(assignment, dtype=float)
    sel = np.asarray(selected, dtype=int)
    value = float((np.asarray(similarity, dtype=float) * W).sum())
    if bias is not None:
        value += float(np.asarray(bias, dtype=float)[sel].sum())
    if redundancy is not None and penalty:
        R = np.triu(np.asarray(redundancy, dtype=float), 1)
        R = R + R.T
        value -= penalty * float(R[np.ix_(sel, sel)].sum()) / 2
    return value


def check_assignment(assignment, selected, *, n_features: int, per_class: int,
                     unique: bool = True) -> None:
    """Raise ``ValueError`` naming the first constraint the solution violates."""
    W = np.asarray(assignment)
    sel = np.asarray(selected)
    if W.ndim != 2 or not np.isin(W, (0, 1)).all():
        raise ValueError("W must be a 2-D 0/1 matrix.")
    if sel.ndim != 1 or len(np.unique(sel)) != len(sel) or len(sel) != n_features:
        raise ValueError(f"Σ s = n_f violated: {len(np.unique(sel))} distinct features selected, "
                         f"expected {n_features}.")
    s = np.zeros(W.shape[1], dtype=bool)
    s[sel] = True
    if (W[:, ~s] != 0).any():
        raise ValueError("W ≤ s violated: a class uses a feature that is not selected.")
    rows = W.sum(axis=1)
    if (rows != per_class).any():
        bad = int(np.flatnonzero(rows != per_class)[0])
        raise ValueError(f"Σ_j W_cj = k violated: class {bad} has {int(rows[bad])} features, "
                         f"expected {per_class}.")
    if unique and len({r.tobytes() for r in W.astype(np.int8)}) != W.shape[0]:
        raise ValueError("Uniqueness violated: two classes share the same feature set.")


# ----------------------------------------------------------------------------- heuristic


def _top_k(A: np.ndarray, selected: np.ndarray, k: int) -> np.ndarray:
    """Each class's k most similar selected features (ties → lower index), as a 0/1 matrix."""
    sub = A[:, selected]
    order = np.lexsort((np.broadcast_to(np.arange(len(selected)), sub.shape), -sub), axis=1)
    W = np.zeros(A.shape, dtype=np.int8)
    rows = np.arange(A.shape[0])[:, None]
    W[rows, selected[order[:, :k]]] = 1
    return W


def _subsets_by_value(values: np.ndarray, k: int):
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


def _deduplicate(W: np.ndarray, A: np.ndarray, selected: np.ndarray, k: int) -> np.ndarray:
    """Give duplicated classes their best unused k-subset of the selected features (cheapest first)."""
    W = W.copy()
    while True:
        dup = _signature_groups(W)
        if not dup:
            return W
        used = {row.tobytes() for row in W}
        best = None
        for group in dup:
            for c in group:
                for subset, value in _subsets_by_value(A[c, selected], k):
                    row = np.zeros(W.shape[1], dtype=np.int8)
                    row[selected[list(subset)]] = 1
                    if row.tobytes() not in used:
                        loss = float(A[c] @ W[c]) - value
                        if best is None or loss < best[0]:
                            best = (loss, c, row)
                        break
        W[best[1]] = best[2]


def _swap_search(A, R, b, s, k, penalty, max_iter=10_000) -> np.ndarray:
    """Best-improvement 1-swap local search on the selection ``s`` (bool mask)."""
    for _ in range(max_iter):
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


def _greedy(A, R, b, n_features, k, penalty, rng=None) -> np.ndarray:
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


def _heuristic(A, R, b, n_features, k, penalty, unique, restarts, seed):
    """Greedy + swap search (several randomised restarts) → (W, selected, objective)."""
    rng = np.random.default_rng(seed)
    starts = [_greedy(A, R, b, n_features, k, penalty)]
    starts += [_greedy(A, R, b, n_features, k, penalty, rng) for _ in range(restarts)]
    best = None
    for s in starts:
        s = _swap_search(A, R, b, s, k, penalty)
        sel = np.flatnonzero(s)
        W = _top_k(A, sel, k)
        if unique:
            W = _deduplicate(W, A, sel, k)
        value = assignment_objective(W, sel, A, np.triu(R, 1), b, penalty)
        if best is None or value > best[2]:
            best = (W, sel, value)
    return best


# ----------------------------------------------------------------------------- Lagrangian bound


def lagrangian_bound(similarity, bias=None, *, n_features: int, per_class: int,
                     incumbent: float | None = None, iterations: int = 1000, redundancy=None,
                     penalty: float = 1.0, patience: int = 20):
    """Upper bound on the optimum by relaxing ``Σ_j W_cj = k`` (ν_c), ``Σ s = n_f`` (μ) and, with
    ``redundancy`` (upper-triangular or symmetric), the pair penalty (α).

    For multipliers ν and ``0 ≤ α_ij ≤ λ R_ij``, ``−λ R_ij s_i s_j ≤ α_ij (1 − s_i − s_j)`` on 0/1
    points, so each feature's profit is ``g_j = b_j + Σ_c max(0, A_cj − ν_c) − Σ_i α_ij`` and
    ``L(ν, α) = k Σ_c ν_c + Σ α + Σ (top n_f of g)`` bounds every feasible solution (uniqueness is
    dropped, which can only raise the maximum). Minimised by projected subgradient steps (Polyak
    steps towards ``incumbent`` when given). Returns ``(bound, reduced)``, where
    ``bound + min(0, reduced_j)`` bounds every solution that selects feature j.
    """
    A = np.asarray(similarity, dtype=float)
    n = A.shape[1]
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=float)
    k, nf = per_class, n_features
    if redundancy is not None and penalty > 0:
        iu, ju = np.nonzero(np.triu(np.asarray(redundancy, dtype=float), 1))
        cap = penalty * np.triu(np.asarray(redundancy, dtype=float), 1)[iu, ju]
    else:
        iu = ju = np.zeros(0, dtype=int)
        cap = np.zeros(0)
    alpha = np.zeros(len(cap))

    def evaluate(nu, alpha):
        paid = np.bincount(iu, alpha, n) + np.bincount(ju, alpha, n)
        g = b + np.maximum(0.0, A - nu[:, None]).sum(0) - paid
        order = np.argsort(-g)
        value = k * nu.sum() + alpha.sum() + g[order[:nf]].sum()
        mu = g[order[nf - 1]]
        return value, g - mu, order[:nf]

    # start between each class's k-th and (k+1)-th best feature overall
    part = -np.sort(-A, axis=1)
    nu = part[:, k] if n > k else part[:, k - 1] - 1.0
    best_value, best_reduced = math.inf, None
    step_scale, stall = 2.0, 0
    for _ in range(iterations):
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
        # projected: components pushing α out of [0, λR] do not move
        pair_grad[((alpha <= 0) & (pair_grad > 0)) | ((alpha >= cap) & (pair_grad < 0))] = 0.0
        norm2 = float(grad @ grad + pair_grad @ pair_grad)
        if norm2 == 0:
            break
        target = incumbent if incumbent is not None else best_value - 0.01 * abs(best_value)
        step = step_scale * max(value - target, 1e-9) / norm2
        nu = nu - step * grad
        alpha = np.clip(alpha - step * pair_grad, 0.0, cap)
    return best_value, best_reduced


# ----------------------------------------------------------------------------- MILP


def _milp(A, R, b, n_features, k, penalty, window, pairs, cut_classes, solver, time_limit,
          abs_gap, incumbent, verbose):
    """Build the linearised model in cvxpy and solve it → (selected, E rows, status, value, bound).

    Class c only gets variables W_cj for the features in its ``window`` (its most similar ones);
    the other features are represented by k − Σ_j W_cj "overflow" slots worth θ_c, the best
    similarity outside the window. That is a relaxation (θ_c bounds every outside feature); it is
    exact for every solution that fills each class inside its window.
    """
    import cvxpy as cp
    import scipy.sparse as sp

    n_classes, n = A.shape
    full = window.all(axis=1)
    theta = np.where(full, 0.0, np.where(window, -np.inf, A).max(axis=1))
    cls, feat = np.nonzero(window)
    is_cut = np.isin(cls, cut_classes)
    s = cp.Variable(n, boolean=True)
    cons = [cp.sum(s) == n_features]
    offset = k * float(theta.sum())  # cvxpy keeps constants out of the solver's objective
    objective = b @ s + offset
    parts, rows_of = [], {}
    for boolean in (False, True):
        pick = np.flatnonzero(is_cut == boolean)
        if len(pick) == 0:
            continue
        e = cp.Variable(len(pick), boolean=boolean, nonneg=not boolean)
        c, j = cls[pick], feat[pick]
        P = sp.csr_array((np.ones(len(pick)), (np.arange(len(pick)), j)), shape=(len(pick), n))
        G = sp.csr_array((np.ones(len(pick)), (c, np.arange(len(pick)))),
                         shape=(n_classes, len(pick)))
        present = np.isin(np.arange(n_classes), c)
        cons.append(e <= P @ s)
        per = G @ e
        if full[present].any():
            cons.append(per[np.flatnonzero(full & present)] == k)
        if (~full & present).any():
            cons.append(per[np.flatnonzero(~full & present)] <= k)
        objective = objective + (A[c, j] - theta[c]) @ e
        parts.append((pick, e))
        for t, (ci, ji) in enumerate(zip(c, j)):
            if boolean:
                rows_of[(int(ci), int(ji))] = (e, t)
    iu, ju = np.nonzero(np.triu(R, 1))
    if penalty > 0 and len(iu):
        y = cp.Variable(len(iu), nonneg=True)
        cons.append(y >= s[iu] + s[ju] - 1)
        tri = _triangles(iu, ju, n)
        if len(tri):
            # three pairwise-penalised features: m chosen of them pay m(m−1)/2 ≥ m − 1 pairs
            pair = {(int(a), int(c)): t for t, (a, c) in enumerate(zip(iu, ju))}
            rows = np.array([[pair[(a, c)], pair[(a, d)], pair[(c, d)]] for a, c, d in tri])
            cons.append(y[rows[:, 0]] + y[rows[:, 1]] + y[rows[:, 2]]
                        >= s[tri[:, 0]] + s[tri[:, 1]] + s[tri[:, 2]] - 1)
        objective = objective - penalty * (R[iu, ju] @ y)
    for c1, c2 in pairs:
        # distinct signatures: c1 uses some feature j that c2 does not (d_j ≤ W_c1j, d_j ≤ 1 − W_c2j)
        own = [j for j in np.flatnonzero(window[c1])]
        d = cp.Variable(len(own), nonneg=True)
        first = cp.hstack([rows_of[(c1, j)][0][rows_of[(c1, j)][1]] for j in own])
        cons += [d <= first, cp.sum(d) >= 1]
        other = [(t, rows_of[(c2, j)]) for t, j in enumerate(own) if (c2, j) in rows_of]
        if other:
            idx = [t for t, _ in other]
            cons.append(d[idx] <= 1 - cp.hstack([var[i] for _, (var, i) in other]))
    problem = cp.Problem(cp.Maximize(objective), cons)
    try:
        with warnings.catch_warnings():  # a time limit is reported by the result
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            if solver == "HIGHS":
                # the gap is ours (relative to the full objective): HiGHS sees it as absolute,
                # because its own objective leaves out cvxpy's constant
                opts = dict(time_limit=float(max(time_limit, 0.01)), mip_rel_gap=0.0,
                            mip_abs_gap=abs_gap, output_flag=verbose)
                if incumbent is not None:
                    # prune nodes that cannot beat the heuristic (HiGHS minimises −objective);
                    # with that cutoff, HiGHS's own heuristics and restarts cost more than they find
                    opts["objective_bound"] = offset - incumbent + 1e-7 * max(1.0, abs(incumbent))
                    opts.update(_highs_known(_HIGHS_PROVE_ONLY))
                problem.solve(solver="HIGHS", verbose=verbose, **opts)
                bound = offset - float(problem.solver_stats.extra_stats.mip_dual_bound)
            else:
                problem.solve(solver="SCIP", verbose=verbose,
                              scip_params={"limits/time": float(max(time_limit, 0.01)),
                                           "limits/absgap": abs_gap})
                bound = offset - float(problem.solver_stats.extra_stats["model"].getDualbound())
    except cp.SolverError:
        return None, None, "solver_error", -math.inf, math.inf
    if s.value is None or problem.status not in ("optimal", "optimal_inaccurate", "user_limit"):
        return None, None, problem.status, -math.inf, bound
    E = np.zeros((n_classes, n))
    for pick, e in parts:
        E[cls[pick], feat[pick]] = e.value
    return np.flatnonzero(s.value > 0.5), E, problem.status, float(problem.value), bound


_HIGHS_PROVE_ONLY = {"mip_heuristic_effort": 0.0, "mip_heuristic_run_rins": False,
                     "mip_heuristic_run_rens": False, "mip_heuristic_run_root_reduced_cost": False,
                     "mip_heuristic_run_feasibility_jump": False, "mip_allow_restart": False}


@functools.cache
def _highs_has(name: str) -> bool:
    """Whether the installed HiGHS knows option ``name`` (older releases lack some)."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    try:
        answer = h.getOptionValue(name)
    except (RuntimeError, ValueError):
        return False
    return not isinstance(answer, tuple) or answer[0] == highspy.HighsStatus.kOk


def _highs_known(options: dict) -> dict:
    """The options the installed HiGHS accepts."""
    return {key: value for key, value in options.items() if _highs_has(key)}


def _triangles(iu, ju, n, limit: int = 20_000) -> np.ndarray:
    """Triangles (a < c < d) of the graph with edges (iu, ju), iu < ju; none if more than ``limit``."""
    adj = np.zeros((n, n), dtype=bool)
    adj[iu, ju] = True
    upper = adj.astype(np.int64)
    if int(((upper @ upper) * upper).sum()) > limit:  # too many: the cuts would swamp the LP
        return np.zeros((0, 3), dtype=int)
    out = [(a, c, d) for a, c in zip(iu, ju) for d in np.flatnonzero(adj[a] & adj[c])]
    return np.array(out, dtype=int).reshape(-1, 3)


def _signature_groups(W: np.ndarray) -> list[list[int]]:
    """Groups of classes that share one feature set."""
    groups: dict[bytes, list[int]] = {}
    for c, row in enumerate(W):
        groups.setdefault(row.tobytes(), []).append(c)
    return [g for g in groups.values() if len(g) > 1]


def solve_assignment(similarity, redundancy=None, bias=None, *, n_features: int, per_class: int,
                     penalty: float = 1.0, unique: bool = True, solver: str = "HIGHS",
                     time_limit: float = 60.0, mip_gap: float = 1e-4,
                     n_candidates: int | None = None, warm_start: bool = True,
                     window: int = 4, max_rounds: int = 50, restarts: int = 2, seed: int = 0,
                     verbose: bool = False, progress: bool = True) -> AssignmentResult:
    """Solve QPM's assignment problem; every returned solution satisfies every constraint.

    ``similarity`` A (C×N, Z_A), ``redundancy`` R (N×N, ≥ 0, only pairs to penalise non-zero, Z_R),
    ``bias`` b (N, Z_B), ``n_features`` n_f, ``per_class`` k, ``penalty`` λ. ``solver`` is
    ``"HIGHS"`` or ``"SCIP"`` (through cvxpy) or ``"heuristic"`` (greedy/swap only, with a
    Lagrangian bound). ``time_limit`` (seconds, whole call) and ``mip_gap`` (relative) stop the
    solver; ``n_candidates`` pre-filters features by Lagrangian profit — the bound stays valid for
    the full problem because every dropped feature is bounded by reduced-cost fixing. ``window``
    (× k) is the least number of its most similar features each class starts with in the MILP
    (more where the heuristic's solution reaches further down its ranking; widened lazily),
    ``max_rounds`` caps the lazy re-solves, ``restarts`` and ``seed`` drive the heuristic. Warns
    with :class:`NotProvenOptimalWarning` when the answer is not proven optimal.
    """
    t0 = time.perf_counter()
    if solver not in SOLVERS:
        raise ValueError(f"Unknown solver {solver!r}: choose one of {', '.join(SOLVERS)}.")
    if solver != "heuristic":
        import cvxpy as cp

        if solver not in cp.installed_solvers():
            raise RuntimeError(f"Solver {solver} is not available to cvxpy (installed: "
                               f"{', '.join(cp.installed_solvers())}). Install it (pip install "
                               f"{'highspy' if solver == 'HIGHS' else 'pyscipopt'}) or pass "
                               "solver='heuristic'.")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be positive seconds; got {time_limit!r}.")
    A, R, b = _as_problem(similarity, redundancy, bias, n_features, per_class, penalty, unique)
    n_classes, n_all = A.shape
    k = per_class

    W, sel, incumbent = _heuristic(A, R, b, n_features, k, penalty, unique, restarts, seed)
    bound, reduced = lagrangian_bound(A, b, n_features=n_features, per_class=k, incumbent=incumbent,
                                      redundancy=R, penalty=penalty)
    history = [("heuristic", incumbent, bound)]
    status, rounds, name = "heuristic", 0, "heuristic"
    # reduced-cost fixing: a feature j with bound + min(0, reduced_j) < incumbent is in no
    # better solution; keep the rest, or the n_candidates most profitable when given
    if n_candidates is None:
        keep = np.flatnonzero(bound + np.minimum(0.0, reduced) >= incumbent)
    else:
        if n_candidates < n_features:
            raise ValueError(f"n_candidates ({n_candidates}) must be at least n_features "
                             f"({n_features}).")
        keep = np.argsort(-reduced, kind="stable")[:n_candidates]
    keep = np.union1d(keep, sel)
    dropped = np.setdiff1d(np.arange(n_all), keep)
    dropped_bound = (bound + np.minimum(0.0, reduced[dropped])).max() if len(dropped) else -math.inf
    tolerance = mip_gap * max(abs(incumbent), 1.0)

    if solver != "heuristic" and bound - incumbent > tolerance:
        name = solver
        Ak, Rk, bk = A[:, keep], R[np.ix_(keep, keep)], b[keep]
        n_keep = len(keep)
        ranks = np.argsort(np.argsort(-Ak, axis=1, kind="stable"), axis=1, kind="stable")
        # windows reach 2k ranks past each class's k-th feature in the heuristic's selection, so
        # solutions near it need no overflow slots (keep is sorted, so searchsorted finds sel)
        kth = np.sort(ranks[:, np.searchsorted(keep, sel)], axis=1)[:, k - 1]
        width = np.minimum(n_keep, np.maximum(window * k, kth + 1 + 2 * k))
        pairs, cut_classes = set(), []
        milp_bound = math.inf  # best bound of the candidate-set relaxations solved so far
        bar = tqdm(total=max_rounds, desc=f"QPM assignment ({solver})", disable=not progress,
                   leave=False)
        while True:
            left = time_limit - (time.perf_counter() - t0)
            inside = ranks < width[:, None]
            selk, E, st, value, round_bound = _milp(
                Ak, Rk, bk, n_features, k, penalty, inside, sorted(pairs), cut_classes, solver, left,
                tolerance, incumbent if warm_start else None, verbose)
            rounds += 1
            bar.update(1)
            # every round solves a relaxation of the candidate problem with the incumbent as
            # cutoff, so max(its bound, incumbent) bounds the candidate problem
            if st == "infeasible":  # nothing beats the incumbent
                round_bound = incumbent
            milp_bound = min(milp_bound, max(round_bound, incumbent))
            if selk is None:
                history.append((f"round {rounds}", None, milp_bound))
                status = "optimal" if st == "infeasible" else "time_limit"
                break
            Wk = _top_k(Ak, selk, k)
            if cut_classes:
                rows = np.asarray(cut_classes)
                Wk[rows] = np.where((E[rows] > 0.5).sum(1, keepdims=True) == k, E[rows] > 0.5,
                                    Wk[rows])
            # classes whose k features do not all lie in their window: widen it
            chosen = np.zeros(n_keep, dtype=bool)
            chosen[selk] = True
            # ... or that take overflow slots in the relaxation (k − Σ_j W_cj > 0)
            short = np.flatnonzero(((inside & chosen).sum(1) < k) | (E.sum(1) < k - 1e-6))
            short = short[width[short] < n_keep]
            dup = _signature_groups(Wk) if unique else []
            # the round's selection, repaired into a feasible solution and polished by the swap
            # search, may beat the incumbent (and so tighten the next round's cutoff)
            polished = np.zeros(n_keep, dtype=bool)
            polished[selk] = True
            polished = np.flatnonzero(_swap_search(Ak, Rk, bk, polished, k, penalty))
            for cand_sel, cand_W in ((selk, Wk), (polished, _top_k(Ak, polished, k))):
                if unique and _signature_groups(cand_W):
                    cand_W = _deduplicate(cand_W, Ak, cand_sel, k)
                W_full = np.zeros((n_classes, n_all), dtype=np.int8)
                W_full[:, keep] = cand_W
                true_value = assignment_objective(W_full, keep[cand_sel], A, np.triu(R, 1), b,
                                                  penalty)
                if true_value > incumbent:
                    W, sel, incumbent = W_full, keep[cand_sel], true_value
            history.append((f"round {rounds}", value, milp_bound))
            done = not dup and not len(short)
            closed = max(milp_bound, dropped_bound) - incumbent <= tolerance
            if done or closed or st != "optimal" or rounds >= max_rounds:
                status = "optimal" if (done and st == "optimal") or closed else "time_limit"
                break
            width[short] = n_keep
            for g in dup:
                pairs |= set(itertools.combinations(g, 2))
                cut_classes = sorted(set(cut_classes) | set(g))
                width[g] = n_keep  # exact rows: the cut must not see overflow slots
        bar.total = bar.n  # stopping before max_rounds is success, not an unfinished bar
        bar.refresh()
        bar.close()
        bound = min(bound, max(milp_bound, dropped_bound))
        history.append(("final", incumbent, bound))
    gap = max(0.0, (bound - incumbent) / max(abs(incumbent), 1.0))
    if gap <= mip_gap * (1 + 1e-6) or bound <= incumbent:
        status = "optimal"
    elif status == "optimal":
        status = "feasible"

    sel = np.sort(np.asarray(sel))
    check_assignment(W, sel, n_features=n_features, per_class=k, unique=unique)
    result = AssignmentResult(assignment=W, selected=sel, status=status, objective=float(incumbent),
                              bound=float(bound), gap=float(gap),
                              seconds=time.perf_counter() - t0, n_lazy_rounds=max(rounds - 1, 0),
                              solver=name, n_candidates=len(keep), history=tuple(history))
    if not result.proven_optimal:
        warnings.warn(f"QPM assignment not proven optimal ({status}): objective {incumbent:.4f}, "
                      f"bound {bound:.4f}, gap {gap:.2%}. Raise time_limit or n_candidates for a "
                      "tighter answer.", NotProvenOptimalWarning, stacklevel=2)
    return result
