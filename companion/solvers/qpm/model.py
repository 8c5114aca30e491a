"""The linearised MILP in cvxpy: windows with overflow slots, pair products and uniqueness cuts."""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .extension import ModelVariables, QPMExtension

if TYPE_CHECKING:
    import cvxpy as cp


class Round(NamedTuple):
    """One MILP round: the selection and W values (None when it found no point), status, bounds."""

    selected: np.ndarray | None
    rows: np.ndarray | None
    status: str
    value: float
    bound: float


def solve_round(A: np.ndarray, R: np.ndarray, b: np.ndarray, n_features: int, k: int,
                penalty: float, window: np.ndarray, pairs: Sequence[tuple[int, int]],
                cut_classes: Sequence[int], solver: str, deadline: float, abs_gap: float,
                incumbent: float | None, verbose: bool, extension: QPMExtension | None = None,
                features: np.ndarray | None = None) -> Round:
    """Build the linearised model in cvxpy and solve it until ``deadline`` (``perf_counter``).

    Class c only gets variables W_cj for the features in its ``window`` (its most similar ones);
    the other features are represented by k − Σ_j W_cj "overflow" slots worth θ_c, the best
    similarity outside the window. That is a relaxation (θ_c bounds every outside feature); it is
    exact for every solution that fills each class inside its window. Rows of ``cut_classes`` are
    binary (they carry uniqueness cuts or the ``extension``'s constraints, and must be full).
    The solver gets the time left once the model is built; none left gives status "time_limit".
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
    parts, exact_rows, exact_var = [], {}, None
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
        if boolean:
            for ci in np.flatnonzero(full & present):
                exact_rows[int(ci)] = np.flatnonzero(c == ci)  # e's entries, in feature order
            exact_var = e
    iu, ju = np.nonzero(np.triu(R, 1))
    y = None
    if penalty > 0 and len(iu):
        y = cp.Variable(len(iu), nonneg=True)
        cons.append(y >= s[iu] + s[ju] - 1)
        tri = _triangles(iu, ju, n)
        if len(tri):
            # three pairwise-penalised features: m chosen of them pay m(m−1)/2 ≥ m − 1 pairs
            pair = {(int(a), int(c)): t for t, (a, c) in enumerate(zip(iu, ju, strict=True))}
            sides = np.array([[pair[(a, c)], pair[(a, d)], pair[(c, d)]] for a, c, d in tri])
            cons.append(y[sides[:, 0]] + y[sides[:, 1]] + y[sides[:, 2]]
                        >= s[tri[:, 0]] + s[tri[:, 1]] + s[tri[:, 2]] - 1)
        objective = objective - penalty * (R[iu, ju] @ y)

    def rows(classes: Sequence[int]) -> cp.Expression:
        """W of ``classes`` (exact rows, one each, repeats allowed) over all features: M @ e."""
        classes = [int(c) for c in classes]
        missing = sorted({c for c in classes if c not in exact_rows})
        if missing:
            raise ValueError(f"classes {missing} must be in cut_classes with full windows for "
                             "uniqueness cuts or the extension's constraints.")
        picked = np.concatenate([exact_rows[c] for c in classes])
        M = sp.csr_array((np.ones(len(picked)), (np.arange(len(picked)), picked)),
                         shape=(len(picked), exact_var.shape[0]))
        return cp.reshape(M @ exact_var, (len(classes), n), order="C")

    if pairs:
        # distinct signatures: c1 uses some feature j that c2 does not (d_j ≤ W_c1j, d_j ≤ 1 − W_c2j)
        first, second = rows([a for a, _ in pairs]), rows([b for _, b in pairs])
        d = cp.Variable(first.shape, nonneg=True)
        cons += [d <= first, d <= 1 - second, cp.sum(d, axis=1) >= 1]
    if extension is not None:
        wanted = [int(c) for c in extension.exact_classes(n_classes)]
        if wanted:
            rows(wanted)  # every class the extension names has an exact row
        cons += list(extension.constraints(ModelVariables(
            s=s, rows=rows, pairs=y,
            pair_index=np.vstack([iu, ju]), features=np.arange(n) if features is None else features,
            n_features=n_features, per_class=k, n_classes=n_classes)))
    problem = cp.Problem(cp.Maximize(objective), cons)
    return _solve(problem, s, parts, cls, feat, (n_classes, n), solver, deadline, abs_gap,
                  None if incumbent is None else offset - incumbent, n_features, verbose, offset)


def _solve(problem: cp.Problem, s: cp.Variable, parts: list[tuple[np.ndarray, cp.Variable]],
           cls: np.ndarray, feat: np.ndarray, shape: tuple[int, int], solver: str,
           deadline: float, abs_gap: float, cutoff: float | None, n_features: int,
           verbose: bool, offset: float) -> Round:
    """Canonicalise, give the solver the time left, and read back its point and bound."""
    import cvxpy as cp

    try:
        with warnings.catch_warnings():  # a time limit is reported by the result
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            if solver == "HIGHS":
                _create_first_highs_quietly()
                # the gap is ours (relative to the full objective): HiGHS sees it as absolute,
                # because its own objective leaves out cvxpy's constant
                opts = dict(mip_rel_gap=0.0, mip_abs_gap=abs_gap, output_flag=verbose)
                if cutoff is not None:
                    # prune nodes that cannot beat the incumbent (HiGHS minimises −objective);
                    # with that cutoff, HiGHS's own heuristics and restarts cost more than they find
                    opts["objective_bound"] = cutoff + 1e-7 * max(1.0, abs(offset - cutoff))
                    opts.update(_highs_known(_HIGHS_PROVE_ONLY))
            else:
                opts = dict(scip_params={"limits/absgap": abs_gap})
            # building the model takes time too: the solver gets what is left of the budget
            data, chain, inverse = problem.get_problem_data(solver, verbose=verbose)
            left = deadline - time.perf_counter()
            if left <= _MIN_SOLVE_SECONDS:
                return Round(None, None, "time_limit", -math.inf, math.inf)
            if solver == "HIGHS":
                opts["time_limit"] = float(left)
            else:
                opts["scip_params"]["limits/time"] = float(left)
            raw = chain.solve_via_data(problem, data, False, verbose, opts)
            problem.unpack_results(raw, chain, inverse)
            stats = problem.solver_stats.extra_stats
            if solver == "HIGHS":
                bound = offset - float(stats.mip_dual_bound)
                has_point = getattr(stats, "primal_solution_status", _HIGHS_FEASIBLE) == \
                    _HIGHS_FEASIBLE
            else:
                bound = offset - float(stats["model"].getDualbound())
                has_point = True
    except cp.SolverError:
        return Round(None, None, "solver_error", -math.inf, math.inf)
    if not math.isfinite(bound):
        bound = math.inf
    status = problem.status
    if status == "user_limit":  # HiGHS's time limit (cvxpy maps kTimeLimit to user_limit)
        status = "time_limit"
    # a run stopped before it found a point better than the cutoff reports a zero "solution"
    usable = ("optimal", "optimal_inaccurate", "time_limit")
    if (s.value is None or not has_point or status not in usable
            or int((s.value > 0.5).sum()) != n_features):
        return Round(None, None, status, -math.inf, bound)
    E = np.zeros(shape)
    for pick, e in parts:
        E[cls[pick], feat[pick]] = e.value
    return Round(np.flatnonzero(s.value > 0.5), E, status, float(problem.value), bound)


_MIN_SOLVE_SECONDS = 0.05  # below this, starting the solver costs more than it can find
_HIGHS_FEASIBLE = 2  # HiGHS's kSolutionStatusFeasible


_HIGHS_PROVE_ONLY = {"mip_heuristic_effort": 0.0, "mip_heuristic_run_rins": False,
                     "mip_heuristic_run_rens": False, "mip_heuristic_run_root_reduced_cost": False,
                     "mip_heuristic_run_feasibility_jump": False, "mip_allow_restart": False}


@functools.cache
def _create_first_highs_quietly() -> None:
    """HiGHS prints a copyright banner to the process's stdout when the first solver object is
    created, before any option can silence it: create that one with file descriptor 1 sent to
    /dev/null, so the banner never reaches a notebook's output (later objects print nothing)."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
            ctypes.CDLL(None).fflush(None)  # C's buffered stdout goes to /dev/null too
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@functools.cache
def _highs_has(name: str) -> bool:
    """Whether the installed HiGHS knows option ``name`` (older releases lack some)."""
    import highspy

    _create_first_highs_quietly()
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
    out = [(a, c, d) for a, c in zip(iu, ju, strict=True) for d in np.flatnonzero(adj[a] & adj[c])]
    return np.array(out, dtype=int).reshape(-1, 3)


