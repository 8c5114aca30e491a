"""QPM metrics against loop references and analytic cases."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.metrics.qpm import (class_independence, contrastive_pairs, contrastiveness,
                                   sid_at_k, structural_grounding)


def sid_reference(M, W, pred, k):
    """SID@k written as plain loops over images, positions and features."""
    vals = []
    for i in range(len(M)):
        row = W[pred[i]]
        if (row != 0).sum() < k:
            continue
        top = np.argsort(-row, kind="stable")[:k]
        total = 0.0
        soft = []
        for f in top:
            m = M[i, f].reshape(-1)
            m = m / max(np.abs(m).mean(), 1e-5)
            e = np.exp(m - m.max())
            soft.append(e / e.sum())
        for p in range(M.shape[2] * M.shape[3]):
            total += max(s[p] for s in soft)
        vals.append(total / k)
    return np.mean(vals)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3))
def test_sid_matches_loop_reference_and_is_scale_invariant(seed, k):
    rng = np.random.default_rng(seed)
    M = rng.random((4, 5, 3, 3)) * 3
    W = (rng.random((3, 5)) < 0.8).astype(float) * rng.permutation(5)[None, :] / 5 + 0.0
    W[:, 0] = 1.0 + np.arange(3)[:, None].ravel()  # distinct, so top-k is unambiguous
    pred = rng.integers(0, 3, 4)
    got = sid_at_k(M, W, pred, k)
    assert got == pytest.approx(sid_reference(M, W, pred, k), rel=1e-9)
    scales = rng.uniform(0.1, 10, (4, 5, 1, 1))
    assert sid_at_k(M * scales, W, pred, k) == pytest.approx(got, rel=1e-9)


def test_sid_is_one_for_disjoint_peaks_and_one_over_k_for_a_shared_peak():
    M = np.zeros((1, 3, 6, 6))
    for f in range(3):
        M[0, f, f, f] = 5.0
    W = np.ones((1, 3))
    assert sid_at_k(M, W, [0], 3) == pytest.approx(1.0, abs=1e-6)
    same = np.zeros((1, 3, 6, 6))
    same[0, :, 2, 2] = 5.0
    assert sid_at_k(same, W, [0], 3) == pytest.approx(1 / 3, abs=1e-6)


def test_class_independence_analytic_cases():
    y = np.repeat([0, 1, 2, 3], 10)
    detector = (y == 2).astype(float)[:, None]  # fires for one class only → CI 0
    shared = (np.arange(40) % 2).astype(float)[:, None]  # same in every class → max share 0.25
    assert class_independence(detector, y) == pytest.approx(0.0)
    assert class_independence(shared, y) == pytest.approx(0.75)


def test_contrastiveness_separates_bimodal_from_unimodal():
    rng = np.random.default_rng(0)
    bimodal = np.concatenate([rng.normal(0, 0.1, 300), rng.normal(5, 0.1, 300)])[:, None]
    unimodal = rng.normal(0, 1, 600)[:, None]
    assert contrastiveness(bimodal) > 0.99
    assert contrastiveness(bimodal) > contrastiveness(unimodal) + 0.4
    assert contrastiveness(3 * bimodal + 7) == pytest.approx(contrastiveness(bimodal), abs=1e-6)


def test_structural_grounding_is_one_when_w_mirrors_the_truth_and_low_otherwise():
    truth = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 1]], dtype=float)
    assert structural_grounding(truth, truth, n_pairs=3) == pytest.approx(1.0)
    disjoint = np.eye(4)
    assert structural_grounding(disjoint, truth, n_pairs=3) == pytest.approx(0.0)


def test_structural_grounding_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="one row per class"):
        structural_grounding(np.eye(3), np.eye(4))


def test_contrastive_pairs_finds_classes_sharing_k_minus_one_features():
    W = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 1, 0], [0, 0, 1, 1, 1]])
    assert contrastive_pairs(W) == [(0, 1)]
    assert contrastive_pairs(torch.as_tensor(W), shared=1) == [(0, 2), (1, 2)]
