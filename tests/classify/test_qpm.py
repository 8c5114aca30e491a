"""QPM constants A, R, b against direct definitions, and the binary layer built from a solution."""

import numpy as np
import pytest
import torch

from companion.classify.qpm import (
    QPM,
    balanced_subset,
    binary_layer,
    qpm_locality,
    qpm_penalty,
    qpm_problem,
    qpm_redundancy,
    qpm_similarity,
    redundancy_threshold,
)
from companion.solvers.qpm import solve_assignment


def make_features(seed=0, n=120, d=10, c=4):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n // c)
    X = rng.random((n, d)) + np.eye(c, d)[y] * 2
    return X, y


def test_similarity_is_normalised_pearson_correlation_and_dead_features_are_zero():
    X, y = make_features()
    X[:, 7] = 3.0  # a dead feature
    A = qpm_similarity(X, y)
    ref = np.array([[np.corrcoef(X[:, j], y == c)[0, 1] if j != 7 else 0.0
                     for j in range(X.shape[1])] for c in range(4)])
    assert np.allclose(A, ref / np.abs(ref).max())
    assert np.isfinite(A).all() and np.abs(A).max() == pytest.approx(1.0)


def test_redundancy_is_clipped_cosine_of_class_profiles():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 6))
    R = qpm_redundancy(A)
    cos = np.array([[A[:, i] @ A[:, j] / np.linalg.norm(A[:, i]) / np.linalg.norm(A[:, j])
                     for j in range(6)] for i in range(6)])
    ref = np.triu(cos, 1)
    ref = np.clip(ref / np.abs(ref).max(), 0, None)
    assert np.allclose(R, ref)


def test_threshold_leaves_a_penalty_free_selection_and_penalty_only_above_it():
    X, y = make_features(2, d=16)
    R = qpm_redundancy(qpm_similarity(X, y))
    tau, clique = redundancy_threshold(R, 6)
    assert len(clique) == 6 == len(set(clique.tolist()))
    assert (R[np.ix_(clique, clique)] < tau).all()
    P = qpm_penalty(R, tau)
    assert ((P > 0) <= (tau <= R)).all() and ((tau <= R) & (R[R > 0].min() < R) <= (P > 0)).all()


def test_locality_prefers_peaked_central_maps():
    maps = np.full((20, 3, 6, 6), 0.1)
    maps[:, 0, 3, 3] = 5.0  # peaked, central
    maps[:, 2, 0, 0] = 5.0  # peaked, on the border
    b = qpm_locality(maps)
    assert b[0] > b[1]  # peaked beats diffuse
    assert b[2] == pytest.approx(b.min())  # border peak gets the minimum
    assert np.abs(b).max() <= np.sqrt(10) * 0.1 + 1e-12


def test_head_is_the_frozen_binary_layer_of_the_solution():
    X, y = make_features(3)
    prob = qpm_problem(X, y, n_features=4, per_class=2)
    res = solve_assignment(prob.similarity, prob.redundancy, prob.bias, n_features=4,
                           per_class=2, progress=False)
    head = binary_layer(res, X)
    assert not any(p.requires_grad for p in head.parameters())
    f = torch.as_tensor(X[:5], dtype=torch.float32)
    sel = res.selected
    mu, sd = X[:, sel].mean(0), X[:, sel].std(0, ddof=1)
    want = ((X[:5, sel] - mu) / sd) @ res.assignment[:, sel].T
    assert torch.allclose(head(f), torch.as_tensor(want, dtype=torch.float32), atol=1e-4)
    assert set(torch.unique(head.weight).tolist()) <= {0.0, 1.0}


def test_bad_features_are_rejected():
    with pytest.raises(ValueError, match="one label per sample"):
        qpm_similarity(np.ones((5, 3)), np.zeros(4))


def test_locality_refuses_maps_of_other_images_than_the_features():
    maps = np.random.default_rng(0).random((6, 3, 4, 4))
    with pytest.raises(ValueError, match="same images as the maps"):
        qpm_locality(maps, maps.mean((2, 3))[:4])
    with pytest.raises(ValueError, match="same images as the maps"):
        qpm_problem(maps.mean((2, 3)), np.arange(6) % 2, maps[:4], n_features=2, per_class=1)


def test_a_map_subset_with_its_own_pooled_rows_gives_the_locality_of_that_subset():
    rng = np.random.default_rng(1)
    maps = rng.random((40, 5, 4, 4))
    pooled, y = maps.mean((2, 3)), np.repeat(np.arange(4), 10)  # ordered by class, as CUB
    sub = balanced_subset(y, 8, seed=0)
    assert np.bincount(y[sub]).tolist() == [2, 2, 2, 2]
    prob = qpm_problem(pooled, y, maps[sub], map_features=pooled[sub], n_features=3,
                       per_class=1)
    assert np.allclose(prob.bias, qpm_locality(maps[sub], pooled[sub]))


def test_qpm_fit_gives_exactly_k_binary_weights_per_class():
    X, y = make_features(3)
    qpm = QPM(n_features=4, per_class=2, progress=False).fit(X_t := torch.as_tensor(X).float(),
                                                             torch.as_tensor(y))
    assert qpm.result_.status == "optimal"
    assert (qpm.weight_.sum(1) == 2).all() and qpm.layer_.num_features == 4
    assert torch.equal(qpm.selected_, torch.as_tensor(qpm.result_.selected))
    with pytest.raises(ValueError, match="fitted on"):
        qpm.predict(X_t[:, :-1])
    with pytest.raises(ValueError, match="no sample"):
        QPM(n_features=4, per_class=2, progress=False).fit(X_t, torch.as_tensor(y) * 0 + 1)
