"""QPM assignment solver: exact against exhaustive search, every constraint on every solution."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from companion.solvers import qpm
from companion.solvers.qpm import NotProvenOptimalWarning, heuristic, solve_assignment


def brute_force(A, R, b, n_features, k, penalty, unique):
    """Optimum by enumerating every selection s and every assignment W."""
    C, N = A.shape
    Rs = np.triu(R, 1)
    best = -math.inf
    for sel in itertools.combinations(range(N), n_features):
        base = b[list(sel)].sum() - penalty * Rs[np.ix_(sel, sel)].sum()
        subsets = list(itertools.combinations(sel, k))
        values = np.array([[A[c, list(S)].sum() for S in subsets] for c in range(C)])
        if unique:
            inner = max((sum(values[c, i] for c, i in enumerate(p))
                         for p in itertools.permutations(range(len(subsets)), C)), default=-math.inf)
        else:
            inner = values.max(1).sum()
        best = max(best, base + inner)
    return best


def best_with_each_feature(A, R, b, n_features, k, penalty):
    """For every feature j, the best objective of a solution that selects j (no uniqueness)."""
    N = A.shape[1]
    Rs = np.triu(R, 1)
    best = np.full(N, -math.inf)
    for sel in itertools.combinations(range(N), n_features):
        s = list(sel)
        top = -np.sort(-A[:, s], axis=1)[:, :k]
        value = top.sum() + b[s].sum() - penalty * Rs[np.ix_(s, s)].sum()
        best[s] = np.maximum(best[s], value)
    return best


def assert_feasible(res, A, n_features, k, unique):
    """Every constraint, checked independently of the package's own checker."""
    W, sel = res.assignment, res.selected
    assert W.shape == A.shape and set(np.unique(W)) <= {0, 1}
    assert len(sel) == n_features == len(set(sel.tolist()))
    unselected = np.setdiff1d(np.arange(A.shape[1]), sel)
    assert W[:, unselected].sum() == 0  # W ≤ s
    assert (W.sum(1) == k).all()  # exactly k per class
    if unique:
        assert len({tuple(r) for r in W}) == A.shape[0]


@st.composite
def instances(draw):
    N = draw(st.integers(3, 6))
    n_features = draw(st.integers(1, min(N, 4)))
    k = draw(st.integers(1, min(n_features, 2)))
    C = draw(st.integers(1, 3))
    unique = draw(st.booleans())
    if unique and math.comb(n_features, k) < C:
        unique = False
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    A = rng.normal(size=(C, N)).round(2)
    if draw(st.booleans()) and C > 1:  # identical classes: uniqueness must bite
        A[1] = A[0]
    R = np.triu(rng.random((N, N)) * (rng.random((N, N)) < 0.4), 1).round(2)
    b = rng.normal(scale=0.3, size=N).round(2) if draw(st.booleans()) else np.zeros(N)
    penalty = draw(st.sampled_from([0.0, 0.5, 2.0]))
    return A, R, b, n_features, k, penalty, unique


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_highs_matches_exhaustive_search(inst):
    A, R, b, n_features, k, penalty, unique = inst
    res = solve_assignment(A, R, b, n_features=n_features, per_class=k, penalty=penalty,
                           unique=unique, time_limit=20, mip_gap=1e-9, progress=False, window=1)
    assert_feasible(res, A, n_features, k, unique)
    opt = brute_force(A, R, b, n_features, k, penalty, unique)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(opt, abs=1e-6)
    assert res.bound >= opt - 1e-6
    recomputed = qpm.assignment_objective(res.assignment, res.selected, A, R, b, penalty)
    assert recomputed == pytest.approx(res.objective, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(instances())
def test_heuristic_is_feasible_and_bounds_are_valid(inst):
    A, R, b, n_features, k, penalty, unique = inst
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotProvenOptimalWarning)
        res = solve_assignment(A, R, b, n_features=n_features, per_class=k, penalty=penalty,
                               unique=unique, solver="heuristic", progress=False)
    assert_feasible(res, A, n_features, k, unique)
    opt = brute_force(A, R, b, n_features, k, penalty, unique)
    assert res.objective <= opt + 1e-9
    assert res.bound >= opt - 1e-6  # the Lagrangian bound never cuts off the optimum


@settings(max_examples=15, deadline=None)
@given(instances())
def test_scip_matches_exhaustive_search(inst):
    A, R, b, n_features, k, penalty, unique = inst
    res = solve_assignment(A, R, b, n_features=n_features, per_class=k, penalty=penalty,
                           unique=unique, solver="SCIP", time_limit=20, mip_gap=1e-9,
                           progress=False)
    assert_feasible(res, A, n_features, k, unique)
    assert res.objective == pytest.approx(brute_force(A, R, b, n_features, k, penalty, unique),
                                          abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(instances())
def test_penalty_aware_lagrangian_bound_and_reduced_costs_are_valid(inst):
    A, R, b, n_features, k, penalty, _ = inst
    bound, reduced = qpm.lagrangian_bound(A, b, n_features=n_features, per_class=k,
                                          redundancy=R, penalty=penalty)
    best = best_with_each_feature(A, R, b, n_features, k, penalty)
    assert bound >= best.max() - 1e-6
    # reduced-cost fixing: no solution that selects j beats bound + min(0, reduced_j)
    assert (bound + np.minimum(0.0, reduced) >= best - 1e-6).all()


def test_penalty_aware_lagrangian_bound_sees_the_penalty():
    # features 0 and 1 are the best for every class but penalised together; 2 and 3 are free
    A = np.array([[1.0, 1.0, 0.6, 0.6, 0.0], [1.0, 1.0, 0.6, 0.0, 0.6]])
    R = np.zeros((5, 5))
    R[0, 1] = 1.0
    free, _ = qpm.lagrangian_bound(A, n_features=2, per_class=2)
    seen, _ = qpm.lagrangian_bound(A, n_features=2, per_class=2, redundancy=R, penalty=2.0)
    opt = best_with_each_feature(A, R, np.zeros(5), 2, 2, 2.0).max()
    assert free == pytest.approx(4.0, abs=1e-6)  # {0, 1} without its penalty
    assert opt - 1e-6 <= seen <= free - 0.5


def test_prefiltered_bound_stays_valid_for_the_full_problem():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 7))
    R = np.triu(rng.random((7, 7)) * (rng.random((7, 7)) < 0.3), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotProvenOptimalWarning)
        res = solve_assignment(A, R, None, n_features=3, per_class=2, n_candidates=4,
                               progress=False)
    opt = brute_force(A, R, np.zeros(7), 3, 2, 1.0, True)
    assert res.n_candidates <= 5 and res.bound >= opt - 1e-6 and res.objective <= opt + 1e-9


def test_identical_classes_get_distinct_signatures_through_lazy_cuts():
    A = np.tile(np.array([3.0, 2.0, 1.0, 0.5, 0.1]), (3, 1))
    res = solve_assignment(A, None, None, n_features=4, per_class=2, mip_gap=1e-9, progress=False)
    assert_feasible(res, A, 4, 2, True)
    assert res.n_lazy_rounds >= 1
    assert res.objective == pytest.approx(brute_force(A, np.zeros((5, 5)), np.zeros(5), 4, 2, 0,
                                                      True))


def test_best_first_subsets_come_in_order_of_value():
    values = np.array([0.3, 2.0, -1.0, 0.7, 1.1])
    got = [v for _, v in heuristic.subsets_by_value(values, 2)]
    want = sorted((values[list(S)].sum() for S in itertools.combinations(range(5), 2)),
                  reverse=True)
    assert np.allclose(got, want)


def test_check_assignment_rejects_each_violation():
    W = np.array([[1, 1, 0], [1, 0, 1]])
    qpm.check_assignment(W, np.array([0, 1, 2]), n_features=3, per_class=2)
    with pytest.raises(ValueError, match="W ≤ s"):
        qpm.check_assignment(W, np.array([0, 1]), n_features=2, per_class=2)
    with pytest.raises(ValueError, match="= k"):
        qpm.check_assignment(W, np.array([0, 1, 2]), n_features=3, per_class=1)
    with pytest.raises(ValueError, match="Uniqueness"):
        qpm.check_assignment(np.array([[1, 1, 0], [1, 1, 0]]), np.array([0, 1, 2]),
                             n_features=3, per_class=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_features=2, per_class=3), "cannot exceed n_features"),
    (dict(n_features=9, per_class=2), "exceeds the number of candidate"),
    (dict(n_features=3, per_class=3), "Unique class signatures are impossible"),
    (dict(n_features=3, per_class=1, solver="GUROBI"), "Unknown solver"),
    (dict(n_features=3, per_class=1, penalty=-1.0), "penalty"),
])
def test_bad_input_is_rejected(kwargs, match):
    A = np.random.default_rng(0).normal(size=(2, 5))
    with pytest.raises(ValueError, match=match):
        solve_assignment(A, progress=False, **kwargs)


def test_nan_similarity_is_rejected():
    A = np.ones((2, 4))
    A[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve_assignment(A, n_features=3, per_class=1, progress=False)


def test_unavailable_solver_says_what_to_do(monkeypatch):
    import cvxpy as cp

    monkeypatch.setattr(cp, "installed_solvers", lambda: ["CLARABEL"])
    with pytest.raises(RuntimeError, match="pip install highspy"):
        solve_assignment(np.eye(3), n_features=2, per_class=1, progress=False)


def test_unproven_answers_warn():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 12))
    R = np.triu(rng.random((12, 12)), 1)
    with pytest.warns(NotProvenOptimalWarning, match="not proven optimal"):
        res = solve_assignment(A, R, None, n_features=5, per_class=2, penalty=2.0,
                               solver="heuristic", progress=False)
    assert res.status != "optimal" and res.gap > 0
