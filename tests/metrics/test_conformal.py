"""Split-conformal sets: the textbook quantile, CHiQPM's hierarchical score and the metrics."""

import math

import numpy as np
import pytest

from companion.metrics.conformal import (
    HierarchicalConformal,
    average_size,
    baseline_sets,
    conformal_quantile,
    coverage,
    hierarchical_scores,
    set_coherence,
    stratified_splits,
)
from companion.metrics.hierarchy import (
    class_affinity,
    decision_hierarchy,
    shared_depth,
    sibling_recovery,
    subtrees,
)


def test_quantile_is_the_textbook_rank_on_a_hand_example():
    scores = [0.3, 0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6]  # n = 9
    # alpha = 0.2: ceil(10 · 0.8) = 8th smallest = 0.8; alpha = 0.5: ceil(5) = 5th = 0.5
    assert conformal_quantile(scores, 0.2) == 0.8
    assert conformal_quantile(scores, 0.5) == 0.5
    assert conformal_quantile(scores, 0.1) == 0.9  # ceil(9) = 9th: the largest
    with pytest.raises(ValueError, match="too few"):
        conformal_quantile(scores, 0.09)  # ceil(10 · 0.91) = 10 > 9


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_coverage_holds_on_exchangeable_scores(alpha):
    # P(s_test ≤ q̂) = ceil((n+1)(1−α))/(n+1) exactly for continuous exchangeable scores
    rng = np.random.default_rng(0)
    n, trials = 49, 4000
    hits = [rng.random() <= conformal_quantile(rng.random(n), alpha) for _ in range(trials)]
    want = math.ceil((n + 1) * (1 - alpha)) / (n + 1)
    se = math.sqrt(want * (1 - want) / trials)
    assert abs(np.mean(hits) - want) < 4 * se
    assert np.mean(hits) >= 1 - alpha - 4 * se


def test_ties_at_the_quantile_are_in_the_set():
    assert conformal_quantile([1.0, 1.0, 1.0, 2.0], 0.4) == 1.0  # ceil(5 · 0.6) = 3rd


def tiny_hierarchy():
    # 3 features, k = 2; classes: {0,1}, {0,2}, {1,2}
    W = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    f = np.array([[3.0, 2.0, 1.0],    # paths: c0 0→1, c1 0→2, c2 1→2; predicted c0 (5)
                  [0.5, 1.0, 4.0]])   # c0 1→0, c1 2→0, c2 2→1; predicted c2 (5)
    return W, f, decision_hierarchy(f, W)


def test_paths_depths_and_scores_by_hand():
    W, f, h = tiny_hierarchy()
    assert h.paths[0].tolist() == [[0, 1], [0, 2], [1, 2]]
    assert h.predicted.tolist() == [0, 2]
    assert h.depth[0].tolist() == [2, 1, 0] and h.depth[1].tolist() == [0, 1, 2]
    s = hierarchical_scores(h)
    # level 0: c0 (predicted) −(3+2); c1 diverges at step 2: −(3+1); c2 at step 1: −2
    assert s[0, 0].tolist() == [-5.0, -4.0, -2.0]
    # level 1: c2 is off the path; c0 −2 (step 2); c1 −1 (its step 2)
    assert s[1, 0].tolist() == [-2.0, -1.0, math.inf]
    # level 2 (= k): only the predicted class is on the path, with an empty sum
    assert s[2, 0].tolist() == [0.0, math.inf, math.inf]
    assert s[2, 1].tolist() == [math.inf, math.inf, 0.0]


def test_subtrees_and_coherence():
    W, f, h = tiny_hierarchy()
    assert subtrees(h.paths[0], 1).tolist() == [[True] * 3, [True, True, False],
                                                 [False, True, False]]
    sets = np.array([[True, True, False], [True, False, True]])
    # image 0: {c0, c1} share step 1 → a subtree; image 1: {c0, c2} is not (c1 sits between)
    assert set_coherence(sets, h) == 0.5
    assert set_coherence(np.zeros((2, 3), bool), h) == 0.0


def synthetic(n, C=6, k=2, n_f=6, seed=0):
    """Images of class y: its features strong, plus noise; W with k features per class."""
    rng = np.random.default_rng(seed)
    W = np.zeros((C, n_f), int)
    for c in range(C):
        W[c, [c % n_f, (c + 1 + c // n_f) % n_f]] = 1
    y = np.arange(n) % C
    f = np.clip(rng.normal(0.6, 0.8, (n, n_f)) + 1.2 * W[y] * rng.random((n, n_f)), 0, None)
    return W, f, y


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_hierarchical_sets_cover_on_exchangeable_data(alpha):
    W, f, y = synthetic(6000)
    cp = HierarchicalConformal(W)
    h = cp.explain(f)
    covs = []
    for cal, test in stratified_splits(y, 0.5, 8, seed=1):
        cp.calibrate(h[cal], y[cal])
        S = cp.predict_sets(h[test], alpha)
        covs.append(coverage(S, y[test]))
        assert 1 <= average_size(S) <= W.shape[0]
    se = math.sqrt(alpha * (1 - alpha) / 3000)
    assert np.mean(covs) >= 1 - alpha - 3 * se


def test_level_rule_and_alpha_without_recalibration():
    W, f, y = synthetic(1200)
    cp = HierarchicalConformal(W).calibrate(f, y)
    acc = cp.level_accuracy_
    assert acc[0] == 1.0 and (np.diff(acc) <= 0).all()
    for alpha in (0.02, 0.1, 0.3, 0.6):
        L = cp.level(alpha)
        assert (acc[:L + 1] >= 1 - alpha).all()
        assert len(acc) - 1 == L or acc[L + 1] < 1 - alpha
    big, small = cp.predict_sets(f, 0.05), cp.predict_sets(f, 0.3)
    assert average_size(big) >= average_size(small)


def test_baselines_cover_and_lac_is_one_minus_probability():
    rng = np.random.default_rng(0)
    C, n = 5, 2000
    logits = rng.normal(size=(n, C)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(C, p=r) for r in p])
    cal, test = np.arange(1000), np.arange(1000, n)
    sets = {m: baseline_sets(p[cal], y[cal], p[test], m, [0.1, 0.2]) for m in ("LAC", "APS", "RAPS")}
    for S in sets.values():
        assert S.shape == (1000, C, 2)
        assert coverage(S[:, :, 0], y[test]) >= 0.9 - 3 * math.sqrt(0.09 / 1000)
    q = conformal_quantile(1 - p[cal, y[cal]], 0.1)  # LAC = our quantile of 1 − p_y
    assert (sets["LAC"][:, :, 0] == (1 - p[test] <= q + 1e-12)).mean() > 0.999


def test_hierarchy_recovery_on_a_known_tree():
    # classes 0,1 share their first path step on every image, 2,3 too: siblings recovered
    paths = np.array([[[0, 1], [0, 2], [3, 4], [3, 5]]] * 4)
    y = np.array([0, 1, 2, 3])
    A = class_affinity(shared_depth(paths, y), y, 4)
    assert sibling_recovery(A, [0, 0, 1, 1]) == (1.0, pytest.approx(1 / 3))
    assert sibling_recovery(A, [0, 1, 0, 1])[0] == 0.0


def test_coherence_agrees_with_the_subtrees_of_each_image():
    W, f, y = synthetic(300, C=6, k=2, n_f=6)
    h = decision_hierarchy(f, W)
    rng = np.random.default_rng(2)
    sets = rng.random((300, 6)) < 0.3
    sets[:100] = subtrees(h.paths[0], 0)[rng.integers(0, 3, 100)]  # some true subtrees
    want = [s.any() and (subtrees(h.paths[b], int(np.argmax(s))) == s).all(1).any()
            for b, s in enumerate(sets)]
    assert set_coherence(sets, h) == pytest.approx(np.mean(want))
    assert 0 < np.mean(want) < 1
