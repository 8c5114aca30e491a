"""The solve: heuristic incumbent, Lagrangian filtering, then MILP rounds with lazy cuts."""

from __future__ import annotations

import itertools
import math
import time
import warnings

import numpy as np
from numpy.typing import ArrayLike

from ...progress import tqdm
from .bound import candidate_features, lagrangian_bound
from .extension import QPMExtension
from .heuristic import deduplicate, heuristic_solution, swap_search, top_k
from .model import solve_round
from .problem import (
    SOLVERS,
    AssignmentResult,
    NotProvenOptimalWarning,
    as_problem,
    assignment_objective,
    check_assignment,
    check_stopping,
    signature_groups,
)


def solve_assignment(similarity: ArrayLike, redundancy: ArrayLike | None = None,
                     bias: ArrayLike | None = None, *, n_features: int, per_class: int,
                     penalty: float = 1.0, unique: bool = True, solver: str = "HIGHS",
                     time_limit: float = 60.0, mip_gap: float = 1e-4,
                     n_candidates: int | None = None, warm_start: bool = True,
                     window: int = 4, max_rounds: int = 50, restarts: int = 2, seed: int = 0,
                     verbose: bool = False, progress: bool = True,
                     extension: QPMExtension | None = None) -> AssignmentResult:
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

    ``time_limit`` covers the whole call: the heuristic's restarts stop at half of it and its
    iterated swap search at 30 % (or when it stalls), the Lagrangian bound at 60 %, and each MILP
    round gets what is left once its model is built. A round that stops before it finds a point
    better than the incumbent returns the incumbent, status ``"time_limit"`` and the gap to the
    best bound proven so far.

    ``extension`` (a :class:`QPMExtension`, e.g. :class:`ForcedSharing`) adds variables and linear
    constraints to every MILP round. Its constraints only shrink the feasible set, so the
    Lagrangian bound and filtering stay on; heuristic and round solutions become the incumbent
    only if they pass ``extension.check``, as they are or after ``extension.repair``, and so does
    ``extension.start()`` (no incumbent: no cutoff).
    Raises ``ValueError`` if the extended problem is infeasible, ``RuntimeError`` if no feasible
    solution was found in time.
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
    check_stopping(time_limit, mip_gap)
    A, R, b = as_problem(similarity, redundancy, bias, n_features, per_class, penalty, unique)
    n_classes, n_all = A.shape
    k = per_class
    deadline = t0 + time_limit
    exact = sorted({int(c) for c in extension.exact_classes(n_classes)}) if extension else []

    def feasible(W_: np.ndarray, sel_: np.ndarray) -> np.ndarray | None:
        """W_ made to meet uniqueness and the extension (same selection), or None."""
        if extension is not None:
            try:
                extension.check(W_, sel_)
            except ValueError:
                W_ = extension.repair(W_, sel_, A)
                if W_ is None:
                    return None
        if unique and signature_groups(W_):
            W_ = deduplicate(W_, A, sel_, k, frozen=exact)
        if extension is not None:
            try:
                check_assignment(W_, sel_, n_features=n_features, per_class=k, unique=unique,
                                 extension=extension)
            except ValueError:
                return None
        return W_

    W, sel, incumbent, ok = heuristic_solution(
        A, R, b, n_features, k, penalty, unique, restarts, seed, deadline=t0 + 0.5 * time_limit,
        repair=feasible if extension is not None else None, explore=t0 + 0.3 * time_limit)
    start = extension.start() if extension is not None else None
    if start is not None:  # a known solution (an earlier solve's) competes with the heuristic's
        sel0 = np.sort(np.asarray(start[1]))
        W0 = feasible(np.asarray(start[0], dtype=np.int8), sel0)
        if W0 is not None:
            value = assignment_objective(W0, sel0, A, np.triu(R, 1), b, penalty)
            if not ok or value > incumbent:
                W, sel, incumbent, ok = W0, sel0, value, True
    scale = max(abs(incumbent), 1.0)  # the gap tolerance's scale, even without a feasible point
    bound, reduced = lagrangian_bound(A, b, n_features=n_features, per_class=k, incumbent=incumbent,
                                      redundancy=R, penalty=penalty,
                                      deadline=t0 + 0.6 * time_limit)
    history = [("heuristic", incumbent if ok else None, bound)]
    if not ok:  # no heuristic point meets the extension: no incumbent, no cutoff
        W, incumbent = None, -math.inf
    status, rounds, name = "heuristic", 0, "heuristic"
    keep, dropped_bound = candidate_features(bound, reduced, incumbent, sel, n_features,
                                             n_candidates)
    tolerance = mip_gap * scale

    if solver != "heuristic" and bound - incumbent > tolerance:
        name = solver
        Ak, Rk, bk = A[:, keep], R[np.ix_(keep, keep)], b[keep]
        n_keep = len(keep)
        ranks = np.argsort(np.argsort(-Ak, axis=1, kind="stable"), axis=1, kind="stable")
        # windows reach 2k ranks past each class's k-th feature in the heuristic's selection, so
        # solutions near it need no overflow slots (keep is sorted, so searchsorted finds sel)
        kth = np.sort(ranks[:, np.searchsorted(keep, sel)], axis=1)[:, k - 1]
        width = np.minimum(n_keep, np.maximum(window * k, kth + 1 + 2 * k))
        width[exact] = n_keep  # the extension's classes: exact binary rows from the start
        pairs, cut_classes = set(), list(exact)
        milp_bound = math.inf  # best bound of the candidate-set relaxations solved so far
        bar = tqdm(total=max_rounds, desc=f"QPM assignment ({solver})", disable=not progress,
                   leave=False)
        while True:
            if time.perf_counter() >= deadline:
                status = "time_limit"
                break
            inside = ranks < width[:, None]
            cutoff = incumbent if warm_start and math.isfinite(incumbent) else None
            selk, E, st, value, round_bound = solve_round(
                Ak, Rk, bk, n_features, k, penalty, inside, sorted(pairs), cut_classes, solver,
                deadline, tolerance, cutoff, verbose, extension, keep)
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
            Wk = top_k(Ak, selk, k)
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
            dup = signature_groups(Wk) if unique else []
            # the round's selection, repaired into a feasible solution and polished by the swap
            # search, may beat the incumbent (and so tighten the next round's cutoff)
            polished = np.zeros(n_keep, dtype=bool)
            polished[selk] = True
            polished = np.flatnonzero(swap_search(Ak, Rk, bk, polished, k, penalty,
                                                  deadline=deadline))
            for cand_sel, cand_W in ((selk, Wk), (polished, top_k(Ak, polished, k))):
                W_full = np.zeros((n_classes, n_all), dtype=np.int8)
                W_full[:, keep] = cand_W
                W_full = feasible(W_full, keep[cand_sel])
                if W_full is None:
                    continue
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
        history.append(("final", incumbent if W is not None else None, bound))
    if W is None:
        if status == "optimal":
            raise ValueError("The extension's constraints leave no feasible assignment "
                             f"({type(extension).__name__}); relax them or change n_f and k.")
        raise RuntimeError(f"No assignment meeting the extension's constraints was found within "
                           f"{time_limit} s ({solver}); raise time_limit.")
    gap = max(0.0, (bound - incumbent) / max(abs(incumbent), 1.0))
    if gap <= mip_gap * (1 + 1e-6) or bound <= incumbent:
        status = "optimal"
    elif status == "optimal":
        status = "feasible"

    sel = np.sort(np.asarray(sel))
    check_assignment(W, sel, n_features=n_features, per_class=k, unique=unique, extension=extension)
    result = AssignmentResult(assignment=W, selected=sel, status=status, objective=float(incumbent),
                              bound=float(bound), gap=float(gap),
                              seconds=time.perf_counter() - t0, n_lazy_rounds=max(rounds - 1, 0),
                              solver=name, n_candidates=len(keep), history=tuple(history))
    if not result.proven_optimal:
        warnings.warn(f"QPM assignment not proven optimal ({status}): objective {incumbent:.4f}, "
                      f"bound {bound:.4f}, gap {gap:.2%}. Raise time_limit or n_candidates for a "
                      "tighter answer.", NotProvenOptimalWarning, stacklevel=2)
    return result
