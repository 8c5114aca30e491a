"""QPM's solver at its time limit: the incumbent with an honest status and gap, on time."""

import math
import time
import warnings

import cvxpy  # noqa: F401  (imported once per process, ~0.6 s, outside the timed calls)
import numpy as np
import pytest

from companion.solvers.qpm import (
    NotProvenOptimalWarning,
    check_assignment,
    lagrangian_bound,
    solve_assignment,
)
from companion.solvers.qpm.model import solve_round


@pytest.fixture(scope="module")
def cub_sized():
    """A 200-class × 256-feature instance built as QPM builds it, from fake pooled features.

    The features are ReLU mixtures of class-specific parts (as in ``bench_qpm.py``); A is their
    Pearson correlation with the class indicators, R the clipped cosine similarity of A's columns,
    kept for the 2 % most redundant pairs.
    """
    rng = np.random.default_rng(0)
    n_classes, n_all, n_parts, n_samples = 200, 256, 100, 4000
    class_parts = rng.random((n_classes, n_parts)) < 6 / n_parts
    mixing = rng.gamma(0.3, 1.0, (n_parts, n_all)) * (rng.random((n_parts, n_all)) < 0.1)
    y = rng.integers(0, n_classes, n_samples)
    present = class_parts[y] & (rng.random((n_samples, n_parts)) < 0.8)
    X = np.maximum(0.0, present @ mixing + 0.3 * rng.standard_normal((n_samples, n_all)))
    Y = np.eye(n_classes)[y]
    Xs = (X - X.mean(0)) / X.std(0)
    Ys = (Y - Y.mean(0)) / Y.std(0)
    A = Ys.T @ Xs / n_samples
    A /= np.abs(A).max()
    profile = A / np.linalg.norm(A, axis=0)
    R = np.triu(np.clip(profile.T @ profile, 0, None), 1)
    R = np.where(np.quantile(R[R > 0], 0.98) < R, R, 0.0)
    return A, R


def solve_timed(A, R, limit, **kwargs):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotProvenOptimalWarning)
        res = solve_assignment(A, R, None, n_features=50, per_class=5, time_limit=limit,
                               progress=False, **kwargs)
    return res, time.perf_counter() - t0


def assert_honest(res, A, R):
    """A valid incumbent whose objective, bound and gap agree with each other."""
    check_assignment(res.assignment, res.selected, n_features=50, per_class=5)
    assert (res.assignment.sum(1) == 5).all() and len(res.selected) == 50
    assert len({r.tobytes() for r in res.assignment}) == A.shape[0]
    value = float((A * res.assignment).sum()) - float(R[np.ix_(res.selected, res.selected)].sum())
    assert res.objective == pytest.approx(value, abs=1e-9)
    assert math.isfinite(res.bound) and res.bound >= res.objective
    assert res.gap == pytest.approx((res.bound - res.objective) / abs(res.objective))


@pytest.mark.parametrize("limit", [0.02, 0.5, 3.0])
def test_a_run_stopped_by_the_limit_returns_the_incumbent_and_its_gap(cub_sized, limit):
    # with the incumbent as cutoff and HiGHS's heuristics off, HiGHS stops at the limit without
    # a better point; cvxpy then reports user_limit with an all-zero selection
    A, R = cub_sized
    res, _ = solve_timed(A, R, limit)
    assert_honest(res, A, R)
    assert res.solver in ("HIGHS", "heuristic")  # the smallest limit leaves no time for a round
    if limit < 1:
        assert res.status == "time_limit" and res.gap > 1e-4
    else:  # here the root LP alone takes longer; a much faster machine might close the gap
        assert (res.status == "time_limit" and res.gap > 1e-4) or \
            (res.status == "optimal" and res.gap <= 1e-4)


def test_the_time_limit_is_respected_within_ten_percent_and_a_second(cub_sized):
    A, R = cub_sized
    for limit in (0.5, 5.0):
        res, wall = solve_timed(A, R, limit)
        assert res.seconds <= wall
        assert wall <= 1.1 * limit + 1.0, f"time_limit={limit} s took {wall:.2f} s"


def test_a_round_with_nothing_better_than_the_cutoff_reports_no_point(cub_sized):
    A, R = cub_sized
    n = A.shape[1]
    window = np.ones(A.shape, dtype=bool)
    # no selection beats the Lagrangian bound, and HiGHS cannot prove that in this time: it stops
    # at the limit, and the round must say "no point", not return cvxpy's zeros
    cutoff, _ = lagrangian_bound(A, n_features=50, per_class=5, redundancy=R)
    for seconds in (0.5, 2.0):
        start = time.perf_counter()
        out = solve_round(A, R, np.zeros(n), 50, 5, 1.0, window, [], [], "HIGHS",
                          start + seconds, 1e-2, cutoff, False)
        assert out.selected is None and out.rows is None
        assert out.status in ("time_limit", "infeasible")
        assert time.perf_counter() - start <= 1.1 * seconds + 1.0


def test_a_round_with_no_time_left_after_building_does_not_start_the_solver():
    A = np.random.default_rng(1).normal(size=(3, 6))
    out = solve_round(A, np.zeros((6, 6)), np.zeros(6), 3, 2, 1.0, np.ones(A.shape, dtype=bool),
                      [], [], "HIGHS", time.perf_counter() - 1.0, 1e-6, None, False)
    assert out.selected is None and out.status == "time_limit" and out.bound == math.inf


def test_highs_gets_the_time_left_after_the_model_is_built(cub_sized, monkeypatch):
    from cvxpy.reductions.solvers.solving_chain import SolvingChain

    A, R = cub_sized
    given, original = [], SolvingChain.solve_via_data

    def spy(self, problem, data, warm_start=False, verbose=False, solver_opts=None):
        given.append((time.perf_counter(), solver_opts["time_limit"]))
        return original(self, problem, data, warm_start, verbose, solver_opts)

    monkeypatch.setattr(SolvingChain, "solve_via_data", spy)
    t0 = time.perf_counter()
    res, wall = solve_timed(A, R, 4.0, window=60)
    assert given, "no MILP round ran"
    # every round is told the time left of the whole budget once its model is built (about
    # 0.05 s here with full windows, which a limit computed before the build would overstate)
    for started, limit in given:
        assert -1e-3 <= limit - (4.0 - (started - t0)) <= 0.02
    assert wall <= 1.1 * 4.0 + 1.0
