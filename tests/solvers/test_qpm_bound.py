"""QPM's clique-strengthened Lagrangian bound and iterated swap search, against exhaustive search."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_qpm_solver import best_with_each_feature  # the exhaustive search, shared

from companion.solvers.qpm.bound import lagrangian_bound, penalty_cliques
from companion.solvers.qpm.heuristic import perturbed_search, selection_value, swap_search


@st.composite
def dense_instances(draw):
    """Small instances whose penalised graph is dense, so that cliques form."""
    N = draw(st.integers(4, 8))
    n_features = draw(st.integers(2, min(N - 1, 5)))
    k = draw(st.integers(1, min(n_features, 2)))
    C = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    A = rng.normal(size=(C, N)).round(2)
    density = draw(st.sampled_from([0.5, 0.8, 1.0]))
    R = np.triu(rng.random((N, N)) * (rng.random((N, N)) < density), 1).round(2)
    b = rng.normal(scale=0.3, size=N).round(2) if draw(st.booleans()) else np.zeros(N)
    penalty = draw(st.sampled_from([0.5, 1.0, 3.0]))
    return A, R, b, n_features, k, penalty


@settings(max_examples=80, deadline=None)
@given(dense_instances())
def test_clique_bound_and_reduced_costs_never_cut_off_a_solution(inst):
    A, R, b, n_features, k, penalty = inst
    best = best_with_each_feature(A, R, b, n_features, k, penalty)
    bound, reduced = lagrangian_bound(A, b, n_features=n_features, per_class=k, redundancy=R,
                                      penalty=penalty)
    assert bound >= best.max() - 1e-6
    assert (bound + np.minimum(0.0, reduced) >= best - 1e-6).all()


@settings(max_examples=40, deadline=None)
@given(dense_instances())
def test_cliques_are_cliques_with_their_least_penalty(inst):
    A, R, _, _, _, _ = inst
    Rs = np.triu(R, 1) + np.triu(R, 1).T
    label, floor = penalty_cliques(Rs, A.sum(0))
    assert label.shape == (A.shape[1],) and (label >= 0).all()
    for t in np.unique(label):
        members = np.flatnonzero(label == t)
        pairs = Rs[np.ix_(members, members)][np.triu_indices(len(members), 1)]
        if len(members) == 1:
            assert floor[t] == 0
        else:
            assert (pairs > 0).all() and floor[t] == pytest.approx(pairs.min())


def test_the_clique_part_tightens_the_bound():
    # features 0, 1, 2 are the best for both classes and pairwise redundant (a triangle, R = 1);
    # 3 and 4 are weaker and free. Pairwise multipliers alone can spread the penalty; the clique
    # term charges m(m − 1)/2 for m chosen members exactly.
    A = np.array([[1.0, 1.0, 1.0, 0.4, 0.3], [1.0, 1.0, 1.0, 0.3, 0.4]])
    R = np.zeros((5, 5))
    R[0, 1] = R[0, 2] = R[1, 2] = 1.0
    opt = best_with_each_feature(A, R, np.zeros(5), 3, 2, 1.0).max()
    plain, _ = lagrangian_bound(A, n_features=3, per_class=2, redundancy=R, cliques=False)
    clique, _ = lagrangian_bound(A, n_features=3, per_class=2, redundancy=R)
    assert opt - 1e-6 <= clique <= plain - 0.1
    assert clique == pytest.approx(opt, abs=0.05)


@settings(max_examples=30, deadline=None)
@given(dense_instances(), st.integers(0, 1000))
def test_iterated_swap_search_keeps_the_size_and_never_loses(inst, seed):
    A, R, b, n_features, k, penalty = inst
    Rs = np.triu(R, 1) + np.triu(R, 1).T
    s = np.zeros(A.shape[1], dtype=bool)
    s[:n_features] = True
    s = swap_search(A, Rs, b, s, k, penalty)
    out = perturbed_search(A, Rs, b, s, k, penalty, np.random.default_rng(seed), patience=20)
    assert out.sum() == n_features
    assert selection_value(A, Rs, b, out, k, penalty) >= selection_value(A, Rs, b, s, k, penalty)
    best = best_with_each_feature(A, R, b, n_features, k, penalty).max()
    assert selection_value(A, Rs, b, out, k, penalty) <= best + 1e-9


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**31), st.sampled_from([0.5, 1.0, 3.0]))
def test_pairwise_bound_never_falls_below_a_mixture_of_two_disjoint_selections(n_features, seed,
                                                                               penalty):
    # half of S and half of a disjoint S' give every feature s_j ≤ 1/2, so each linearised pair
    # y_ij ≥ s_i + s_j − 1 holds at y = 0: for any multipliers the bound without cliques is at
    # least the mean of the two selections' values without the penalty (the benchmark's floor)
    rng = np.random.default_rng(seed)
    N, k, C = 2 * n_features + int(rng.integers(0, 3)), int(rng.integers(1, n_features + 1)), 3
    A = rng.normal(size=(C, N)).round(2)
    R = np.triu(rng.random((N, N)), 1).round(2)  # every pair penalised
    b = rng.normal(scale=0.3, size=N).round(2)
    order = rng.permutation(N)
    first, second = (np.isin(np.arange(N), order[part]) for part in
                     (slice(0, n_features), slice(n_features, 2 * n_features)))
    floor = (selection_value(A, R, b, first, k, 0.0) + selection_value(A, R, b, second, k, 0.0)) / 2
    bound, _ = lagrangian_bound(A, b, n_features=n_features, per_class=k, redundancy=R,
                                penalty=penalty, cliques=False)
    assert bound >= floor - 1e-9
    # the best selection pays its penalty, so the floor can lie above the optimum
    assert best_with_each_feature(A, R, b, n_features, k, penalty).max() <= bound + 1e-6
