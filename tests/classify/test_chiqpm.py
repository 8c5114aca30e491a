"""CHiQPM: forced pairs, idealised shares, the Feature Grounding Loss and its schedule."""

import itertools

import numpy as np
import pytest
import torch

from companion.classify.chiqpm import (
    CHiQPM,
    feature_grounding_loss,
    forced_pairs,
    grounding_schedule,
    grounding_term,
    sharing_pairs,
)
from companion.classify.qpm import QPM
from companion.classify.sparse import SparseLayer


def test_forced_pairs_are_the_closest_rows_of_A():
    A = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.0, 0.7], [-1.0, 0.0]])
    # distances: (0,1) 0.1, (2,3) 0.3, then (0,4) 1.0 ...
    assert forced_pairs(A, 0.4) == [(0, 1), (2, 3)]  # int(5 · 0.4) = 2
    assert forced_pairs(A, 0.0) == []
    assert forced_pairs(A * 7, 0.4) == [(0, 1), (2, 3)]  # scale-free
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        forced_pairs(A, 1.5)
    with pytest.raises(ValueError, match="only 1"):
        forced_pairs(A[:2], 1.0)


def test_grounding_loss_matches_its_definition():
    rng = np.random.default_rng(0)
    f = torch.relu(torch.as_tensor(rng.normal(size=(6, 5)), dtype=torch.float32))
    W = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.float32)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    want = []
    for i in range(6):
        w = W[y[i]].numpy()
        x = f[i].numpy()
        on, off = (x * w).sum() / w.sum(), (x * (1 - w)).sum() / (5 - w.sum())
        want.append((2 * off - on) / max(np.abs(x).max(), 0.01))
    assert feature_grounding_loss(f, W, y).item() == pytest.approx(np.mean(want), rel=1e-5)


def test_grounding_gradient_raises_assigned_and_lowers_unassigned_features():
    sel = torch.arange(4)
    W = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    layer = SparseLayer(sel, W, torch.zeros(4), torch.ones(4), trainable_norm=False, relu=True)
    maps = torch.full((1, 4, 2, 2), 1.0, requires_grad=True)
    maps.data[0, 0] = 2.0  # one feature carries the max, so the scale's gradient is elsewhere
    term = grounding_term(layer, 3.0)
    term(maps, None, W, torch.tensor([0])).backward()
    g = maps.grad.sum((2, 3))[0]
    assert g[1] < 0 and (g[2:] > 0).all()  # descent: assigned up, unassigned down


def test_schedule_is_the_papers_share_scaled():
    assert grounding_schedule(70) == [(60, 3.0), (10, 0.0)]
    assert grounding_schedule(7) == [(6, 3.0), (1, 0.0)]
    assert grounding_schedule(2) == [(2, 3.0)]
    assert grounding_schedule(1) == [(1, 3.0)]


def make_features(seed=0, n=240, d=14, c=8):
    """Classes in superclasses of two: siblings share most of their signal features."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n // c)
    signal = np.zeros((c, d))
    for cl in range(c):
        signal[cl, [cl // 2, 4 + cl // 2, 8 + cl % 6]] = [2.0, 1.5, 1.0]
    return rng.random((n, d)) + signal[y], y


def test_chiqpm_forces_and_keeps_shares_and_every_constraint_holds():
    X, y = make_features()
    k = 3
    model = CHiQPM(8, k, rho=0.5, progress=False, time_limit=30).fit(X, y)
    W = model.assignment_
    assert len(model.pairs_) == 4
    forced = model.forced_result_.assignment
    assert all(int(forced[a] @ forced[b]) == k - 1 for a, b in model.pairs_)
    assert (W.sum(1) == k).all() and len({r.tobytes() for r in W}) == len(W)
    assert len(sharing_pairs(W, k - 1)) >= len(model.pairs_)
    assert model.result_.objective >= model.forced_result_.objective - 1e-9
    assert model.result_.status == "optimal"
    assert model.layer_.relu and not model.layer_.trainable_norm
    plain = QPM(8, k, progress=False).fit(X, y)
    assert plain.result_.objective >= model.result_.objective - 1e-9  # constraints cost


def test_forced_pairs_against_exhaustive_count():
    W = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]])
    want = [(a, b) for a, b in itertools.combinations(range(4), 2) if (W[a] * W[b]).sum() >= 1]
    assert sharing_pairs(W, 1) == want and sharing_pairs(W, 2) == [(0, 3)]


def test_infeasible_forced_sharing_names_the_constraint():
    # four near-identical classes force a K4 of pairs sharing exactly one of two features;
    # among the 2-subsets of four features, no four are pairwise intersecting in one: infeasible
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(6), 40)
    X = rng.random((240, 4))
    X[y == 4, 0] += 3
    X[y == 5, 1] += 3
    with pytest.raises(ValueError, match="forced sharing is infeasible.*k − 1 = 1"):
        CHiQPM(4, 2, rho=1.0, progress=False, time_limit=30).fit(X, y)


def test_acyclic_pairs_skip_a_pair_that_closes_a_cycle():
    A = np.array([[0.0, 0.0], [0.1, 0.0], [0.05, 0.05], [3.0, 3.0], [3.0, 2.0]])
    # closest: (0,2) 0.07, (1,2) 0.07, (0,1) 0.1 closes the triangle, then (3,4) ...
    assert forced_pairs(A, 0.6) == [(0, 2), (1, 2), (0, 1)]
    assert forced_pairs(A, 0.6, acyclic=True) == [(0, 2), (1, 2), (3, 4)]


def test_without_an_assignment_in_time_the_pairs_fall_back_to_a_forest(monkeypatch):
    X, y = make_features()
    calls = []
    solve = QPM._solve

    def first_times_out(self, extension=None):
        calls.append(extension)
        if len(calls) == 1:
            raise RuntimeError("No assignment meeting the extension's constraints was found")
        return solve(self, extension)

    monkeypatch.setattr(QPM, "_solve", first_times_out)
    model = CHiQPM(8, 3, rho=1.0, progress=False, time_limit=30).fit(X, y)
    assert model.pair_rule_.endswith("(fallback)")
    assert model.pairs_ == forced_pairs(model.problem_.raw_similarity, 1.0, acyclic=True)
    W = model.forced_result_.assignment
    assert all(int(W[a] @ W[b]) == 2 for a, b in model.pairs_)


def test_repair_gives_siblings_distinct_rows():
    from companion.solvers.qpm import ForcedSharing

    # a star: five children of class 0 must each share 2 of its 3 features, all rows unique
    A = np.random.default_rng(0).normal(size=(6, 8))
    W = np.zeros((6, 8), np.int8)
    W[:, :3] = 1
    fs = ForcedSharing([(0, c) for c in range(1, 6)])
    fixed = fs.repair(W, np.arange(8), A)
    assert fixed is not None and len({r.tobytes() for r in fixed}) == 6
    assert all(int(fixed[0] @ fixed[c]) == 2 for c in range(1, 6))
