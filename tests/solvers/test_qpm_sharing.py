"""QPM with an extension: CHiQPM's forced sharing, exact against exhaustive search."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from companion.solvers.qpm import (
    ForcedSharing,
    IdealisedSharing,
    NotProvenOptimalWarning,
    QPMExtension,
    assignment_objective,
    check_assignment,
    solve_assignment,
)


def brute_force(A, R, b, n_features, k, penalty, unique, pairs, shared):
    """Optimum over every selection and every assignment W that meets the forced sharing."""
    C, N = A.shape
    Rs = np.triu(R, 1)
    best = -math.inf
    for sel in itertools.combinations(range(N), n_features):
        base = b[list(sel)].sum() - penalty * Rs[np.ix_(sel, sel)].sum()
        subsets = [frozenset(S) for S in itertools.combinations(sel, k)]
        values = np.array([[A[c, list(S)].sum() for S in subsets] for c in range(C)])
        for choice in itertools.product(range(len(subsets)), repeat=C):
            if unique and len(set(choice)) < C:
                continue
            if any(len(subsets[choice[a]] & subsets[choice[c]]) != shared for a, c in pairs):
                continue
            best = max(best, base + sum(values[c, i] for c, i in enumerate(choice)))
    return best


def assert_feasible(res, A, n_features, k, unique, pairs, shared):
    """Every constraint, QPM's and the forced sharing, checked without the package's checker."""
    W, sel = res.assignment, res.selected
    assert W.shape == A.shape and set(np.unique(W)) <= {0, 1}
    assert len(sel) == n_features == len(set(sel.tolist()))
    assert W[:, np.setdiff1d(np.arange(A.shape[1]), sel)].sum() == 0  # W ≤ s
    assert (W.sum(1) == k).all()
    if unique:
        assert len({tuple(r) for r in W}) == A.shape[0]
    for a, c in pairs:
        assert int(W[a] @ W[c]) == shared, (a, c)


@st.composite
def forced_instances(draw):
    N = draw(st.integers(3, 6))
    n_features = draw(st.integers(2, min(N, 4)))
    k = draw(st.integers(1, min(n_features, 3)))
    C = draw(st.integers(2, 4))
    unique = draw(st.booleans())
    if unique and math.comb(n_features, k) < C:
        unique = False
    all_pairs = list(itertools.combinations(range(C), 2))
    pairs = draw(st.lists(st.sampled_from(all_pairs), min_size=1, max_size=3, unique=True))
    shared = draw(st.one_of(st.none(), st.integers(0, k)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    A = rng.normal(size=(C, N)).round(2)
    if draw(st.booleans()):  # identical classes: uniqueness and sharing both bite
        A[1] = A[0]
    R = np.triu(rng.random((N, N)) * (rng.random((N, N)) < 0.4), 1).round(2)
    b = rng.normal(scale=0.3, size=N).round(2) if draw(st.booleans()) else np.zeros(N)
    penalty = draw(st.sampled_from([0.0, 0.5, 2.0]))
    return A, R, b, n_features, k, penalty, unique, pairs, shared


def check_against_exhaustive(inst, solver, extension=None, **kwargs):
    A, R, b, n_features, k, penalty, unique, pairs, shared = inst
    ext = (extension or ForcedSharing)(pairs, shared)
    want = k - 1 if shared is None else shared
    opt = brute_force(A, R, b, n_features, k, penalty, unique, pairs, want)
    if opt == -math.inf:
        event("infeasible")
        with pytest.raises(ValueError, match="no feasible assignment"):
            solve_assignment(A, R, b, n_features=n_features, per_class=k, penalty=penalty,
                             unique=unique, solver=solver, time_limit=20, mip_gap=1e-9,
                             progress=False, extension=ext, **kwargs)
        return
    res = solve_assignment(A, R, b, n_features=n_features, per_class=k, penalty=penalty,
                           unique=unique, solver=solver, time_limit=20, mip_gap=1e-9,
                           progress=False, extension=ext, **kwargs)
    event("heuristic point feasible" if res.history[0][1] is not None else "no heuristic point")
    event(f"lazy rounds: {min(res.n_lazy_rounds, 2)}")
    assert_feasible(res, A, n_features, k, unique, pairs, want)
    check_assignment(res.assignment, res.selected, n_features=n_features, per_class=k,
                     unique=unique, extension=ext)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(opt, abs=1e-6)
    assert res.bound >= opt - 1e-6
    assert assignment_objective(res.assignment, res.selected, A, R, b, penalty) == \
        pytest.approx(res.objective, abs=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forced_instances())
def test_highs_with_forced_sharing_matches_exhaustive_search(inst):
    check_against_exhaustive(inst, "HIGHS", window=1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forced_instances())
def test_highs_with_forced_sharing_and_no_cutoff_matches_exhaustive_search(inst):
    check_against_exhaustive(inst, "HIGHS", warm_start=False)


class _NoRepair(ForcedSharing):
    """Forced sharing without a repair: the heuristic has no point, the MILP must find one."""

    def repair(self, assignment, selected, similarity):
        return None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forced_instances())
def test_highs_with_forced_sharing_and_no_repair_matches_exhaustive_search(inst):
    check_against_exhaustive(inst, "HIGHS", extension=_NoRepair, window=1)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forced_instances())
def test_scip_with_forced_sharing_matches_exhaustive_search(inst):
    check_against_exhaustive(inst, "SCIP")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forced_instances())
def test_heuristic_with_forced_sharing_is_feasible_or_says_so(inst):
    A, R, b, n_features, k, penalty, unique, pairs, shared = inst
    want = k - 1 if shared is None else shared
    opt = brute_force(A, R, b, n_features, k, penalty, unique, pairs, want)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotProvenOptimalWarning)
            res = solve_assignment(A, R, b, n_features=n_features, per_class=k, penalty=penalty,
                                   unique=unique, solver="heuristic", progress=False,
                                   extension=ForcedSharing(pairs, shared))
    except RuntimeError as err:  # the repair may fail; it must say so, never return a violator
        assert "No assignment meeting the extension" in str(err)
        return
    assert_feasible(res, A, n_features, k, unique, pairs, want)
    assert res.objective <= opt + 1e-9
    assert res.bound >= opt - 1e-6  # the base problem's bound still bounds the extended one


def test_repair_fits_children_to_parents_along_a_tree():
    A = np.array([[5.0, 4, 3, 2, 1], [1.0, 2, 3, 4, 5], [0.0, 0, 0, 9, 8]])
    W = np.zeros((3, 5), dtype=np.int8)
    W[0, [0, 1]] = W[1, [3, 4]] = W[2, [3, 4]] = 1
    fixed = ForcedSharing([(0, 1), (1, 2)], shared=1).repair(W, np.arange(5), A)
    assert fixed[0].tolist() == [1, 1, 0, 0, 0]  # the root keeps its row
    assert fixed[1].tolist() == [0, 1, 0, 0, 1]  # best of row 0 (feature 1) + best other (4)
    assert fixed[2].tolist() == [0, 0, 0, 1, 1]  # best of row 1 (4) + best other (3)


def test_repair_gives_a_cycle_one_common_core():
    # along the tree, 1 and 2 each share one feature with 0 but none with each other
    A = np.array([[1.0, 1, 0, 0, 0], [5.0, 0, 4, 0, 0], [0.0, 5, 0, 4, 0]])
    W = np.zeros((3, 5), dtype=np.int8)
    W[:, [0, 1]] = 1
    triangle = ForcedSharing([(0, 1), (1, 2), (0, 2)], shared=1)
    fixed = triangle.repair(W, np.arange(5), A)
    triangle.check(fixed, np.arange(5))
    assert (fixed[:, 0] == 1).all()  # the core: the group's best feature of the first class
    assert fixed[0].tolist() == [1, 1, 0, 0, 0]  # the first class keeps its row
    # the others add their best features that neither the first class nor the other holds
    assert fixed[1].tolist() == [1, 0, 1, 0, 0] and fixed[2].tolist() == [1, 0, 0, 1, 0]
    # four classes pairwise sharing one of three features is impossible: None, never a violator
    A4 = np.vstack([A, A[0]])[:, :3]
    W4 = np.zeros((4, 3), dtype=np.int8)
    W4[:, [0, 1]] = 1
    clique = ForcedSharing(itertools.combinations(range(4), 2), shared=1)
    assert clique.repair(W4, np.arange(3), A4) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 4), st.integers(1, 40))
def test_repair_meets_any_pair_graph_that_leaves_features_to_spare(seed, k, n_pairs):
    """Random pair graphs (cycles, chords, cut classes) on 30 classes, 20 of 24 features selected:
    where every block can have its private features, the repair meets every pair and keeps the
    paired classes' rows unique; otherwise it says None, never a violator."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(30, 24))
    sel = np.sort(rng.choice(24, 20, replace=False))
    shared = int(rng.integers(0, k))
    pairs = {tuple(sorted(rng.choice(30, 2, replace=False).tolist())) for _ in range(n_pairs)}
    order = np.argsort(-A[:, sel], axis=1)[:, :k]
    W = np.zeros((30, 24), dtype=np.int8)
    W[np.arange(30)[:, None], sel[order]] = 1
    fixed = ForcedSharing(sorted(pairs), shared=shared).repair(W, sel, A)
    largest = max(len(b) for b in nx.biconnected_components(nx.Graph(sorted(pairs))))
    if (largest - 1) * (k - shared) <= len(sel) - k - 2 * (k - shared):  # room, and some slack
        event("room for every block")
        assert fixed is not None
    if fixed is not None:
        ForcedSharing(sorted(pairs), shared=shared).check(fixed, sel)
        paired = sorted({c for p in pairs for c in p})  # the solver deduplicates the others
        assert len({fixed[c].tobytes() for c in paired}) == len(paired)
        assert (fixed.sum(1) == k).all()
        assert not fixed[:, np.setdiff1d(np.arange(24), sel)].any()


def test_repair_meets_the_closest_pairs_of_200_classes():
    """CUB's shape: the 100 closest of 200 classes' pairs form long cycles with chords; fitting
    children to parents along a tree cannot close them, the blocks' cores can."""
    from companion.classify.chiqpm import forced_pairs

    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 96)) * 0.05 + rng.normal(size=(1, 96)) * 0.02
    pairs = forced_pairs(A, 0.5)
    sel = np.sort(rng.choice(96, 50, replace=False))
    order = np.argsort(-A[:, sel], axis=1)[:, :5]
    W = np.zeros(A.shape, dtype=np.int8)
    W[np.arange(200)[:, None], sel[order]] = 1
    sharing = ForcedSharing(pairs)
    fixed = sharing.repair(W, sel, A)
    check_assignment(fixed, sel, n_features=50, per_class=5, unique=False, extension=sharing)
    paired = sorted({c for p in pairs for c in p})
    assert len({fixed[c].tobytes() for c in paired}) == len(paired)


def test_check_names_the_violated_pair_and_bad_pairs_are_rejected():
    W = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    ForcedSharing([(0, 1), (1, 2)]).check(W, np.arange(3))  # k − 1 = 1 shared
    with pytest.raises(ValueError, match="classes 0 and 2 share 1 features, expected 2"):
        ForcedSharing([(0, 2)], shared=2).check(W, np.arange(3))
    with pytest.raises(ValueError, match="different classes"):
        ForcedSharing([(1, 1)])
    with pytest.raises(ValueError, match="out of range"):
        solve_assignment(np.eye(3), n_features=3, per_class=1, progress=False,
                         extension=ForcedSharing([(0, 5)]))


def test_forced_sharing_changes_the_answer_where_it_binds():
    # the classes' favourite pairs are disjoint; forcing them to share one feature costs 3
    A = np.array([[3.0, 3.0, 0.0, 0.0, 1.0], [0.0, 0.0, 3.0, 3.0, 1.0]])
    free = solve_assignment(A, n_features=4, per_class=2, progress=False, mip_gap=1e-9)
    forced = solve_assignment(A, n_features=4, per_class=2, progress=False, mip_gap=1e-9,
                              extension=ForcedSharing([(0, 1)]))
    assert int(free.assignment[0] @ free.assignment[1]) == 0
    assert int(forced.assignment[0] @ forced.assignment[1]) == 1
    # class 0 keeps {0, 1} (6); class 1 takes one of them (0) and one of {2, 3} (3)
    assert forced.objective == pytest.approx(9.0) and free.objective == pytest.approx(12.0)
    assert forced.status == "optimal" and forced.bound == pytest.approx(9.0, abs=1e-6)


@pytest.mark.parametrize("solver", ["HIGHS", "SCIP"])
def test_without_a_feasible_heuristic_point_the_milp_still_finds_the_optimum(solver):
    # the heuristic gives the classes disjoint rows, which violate the sharing and are not repaired
    A = np.array([[3.0, 3.0, 0.0, 0.0, 1.0], [0.0, 0.0, 3.0, 3.0, 1.0], [1.0, 0.0, 2.0, 0.0, 0.5]])
    pairs = [(0, 1), (1, 2)]
    res = solve_assignment(A, n_features=4, per_class=2, progress=False, mip_gap=1e-9,
                           solver=solver, extension=_NoRepair(pairs))
    assert res.history[0][1] is None  # no incumbent from the heuristic
    assert_feasible(res, A, 4, 2, True, pairs, 1)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(
        brute_force(A, np.zeros((5, 5)), np.zeros(5), 4, 2, 0.0, True, pairs, 1), abs=1e-9)


def test_an_infeasible_extension_is_reported_not_returned():
    A = np.random.default_rng(6).normal(size=(2, 5))
    with pytest.raises(ValueError, match="no feasible assignment"):  # sharing k with unique rows
        solve_assignment(A, n_features=3, per_class=2, progress=False,
                         extension=ForcedSharing([(0, 1)], shared=2))


def test_the_base_extension_adds_nothing():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(3, 6))
    plain = solve_assignment(A, n_features=3, per_class=2, progress=False, mip_gap=1e-9)
    hooked = solve_assignment(A, n_features=3, per_class=2, progress=False, mip_gap=1e-9,
                              extension=QPMExtension())
    assert hooked.objective == pytest.approx(plain.objective, abs=1e-12)
    assert (hooked.assignment == plain.assignment).all()


def brute_force_idealised(A, R, b, sel, k, penalty, unique, pairs, shared, target):
    """Optimum over every W on the fixed selection with ≥ target pairs sharing ≥ shared."""
    C = A.shape[0]
    base = b[list(sel)].sum() - penalty * np.triu(R, 1)[np.ix_(sel, sel)].sum()
    subsets = [frozenset(S) for S in itertools.combinations(sel, k)]
    best = -math.inf
    for choice in itertools.product(range(len(subsets)), repeat=C):
        if unique and len(set(choice)) < C:
            continue
        if sum(len(subsets[choice[a]] & subsets[choice[c]]) >= shared for a, c in pairs) < target:
            continue
        best = max(best, base + sum(A[c, list(subsets[i])].sum() for c, i in enumerate(choice)))
    return best


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forced_instances(), st.data())
def test_idealised_sharing_matches_exhaustive_search(inst, data):
    A, R, b, n_features, k, penalty, unique, pairs, shared = inst
    want = k - 1 if shared is None else shared
    sel = sorted(data.draw(st.lists(st.integers(0, A.shape[1] - 1), min_size=n_features,
                                    max_size=n_features, unique=True)))
    target = data.draw(st.integers(0, len(pairs)))
    ext = IdealisedSharing(pairs, target, sel, shared)
    opt = brute_force_idealised(A, R, b, sel, k, penalty, unique, pairs, want, target)
    kwargs = dict(n_features=n_features, per_class=k, penalty=penalty, unique=unique,
                  time_limit=20, mip_gap=1e-9, progress=False, extension=ext)
    if opt == -math.inf:
        event("infeasible")
        with pytest.raises(ValueError, match="no feasible assignment"):
            solve_assignment(A, R, b, **kwargs)
        return
    res = solve_assignment(A, R, b, **kwargs)
    assert res.selected.tolist() == sel
    assert (res.assignment.sum(1) == k).all() and res.assignment[:, np.setdiff1d(
        np.arange(A.shape[1]), sel)].sum() == 0
    if unique:
        assert len({tuple(r) for r in res.assignment}) == A.shape[0]
    W = res.assignment
    assert sum(int(W[a] @ W[c]) >= want for a, c in pairs) >= target
    assert res.status == "optimal" and res.objective == pytest.approx(opt, abs=1e-6)


def test_idealised_sharing_returns_the_forced_solution_when_time_runs_out_first():
    """The idealised solve starts from the forced solution: at a time limit too short for HiGHS
    to find a point of its own it returns that one, status time_limit, never 'nothing found'."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(60, 40))
    kw = dict(n_features=20, per_class=5, progress=False)
    pairs = [(2 * i, 2 * i + 1) for i in range(20)]
    forced = solve_assignment(A, **kw, time_limit=30, extension=ForcedSharing(pairs))
    W = forced.assignment
    found = [(a, c) for a, c in itertools.combinations(range(60), 2) if W[a] @ W[c] >= 4]
    ideal = IdealisedSharing(found, len(pairs), forced.selected, fallback=W)
    assert ideal.start()[0].tolist() == W.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotProvenOptimalWarning)
        res = solve_assignment(A, **kw, time_limit=0.01, extension=ideal)
    assert res.history[0][1] == pytest.approx(forced.objective)  # the start, before any round
    assert res.objective >= forced.objective - 1e-9 and res.status in ("time_limit", "optimal")
    assert res.selected.tolist() == forced.selected.tolist()


def test_idealised_sharing_starts_from_the_forced_solution_and_never_loses():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 7))
    pairs = [(0, 1), (2, 3)]
    kw = dict(n_features=5, per_class=3, progress=False, time_limit=20)
    forced = solve_assignment(A, **kw, extension=ForcedSharing(pairs))
    W = forced.assignment
    found = [(a, c) for a, c in itertools.combinations(range(5), 2) if W[a] @ W[c] >= 2]
    ideal = solve_assignment(A, **kw, extension=IdealisedSharing(
        found, len(pairs), forced.selected, fallback=W))
    assert ideal.objective >= forced.objective - 1e-9
    assert ideal.selected.tolist() == forced.selected.tolist()
    assert sum(ideal.assignment[a] @ ideal.assignment[c] >= 2 for a, c in found) >= len(pairs)
