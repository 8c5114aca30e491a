"""QPM metrics against analytic cases and invariants."""

import numpy as np
import pytest
import torch

from companion.metrics.qpm import contrastive_pairs, contrastiveness, structural_grounding


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


def test_qpm_metrics_reads_the_features_and_weights_the_head_decides_with():
    from types import SimpleNamespace

    from companion.metrics.interpretability import class_independence, diversity_at_k
    from companion.metrics.qpm import qpm_metrics
    from companion.models.sparse import SparseLayer

    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(60, 6, 4, 4, generator=gen)
    labels = torch.arange(60) % 3
    pooled = maps.mean((2, 3))
    W = torch.tensor([[1.0, 1, 0], [0, 1, 1], [1, 0, 1]])
    head = SparseLayer(torch.tensor([0, 2, 5]), W, pooled[:, [0, 2, 5]].mean(0),
                       pooled[:, [0, 2, 5]].std(0), trainable_norm=False)
    fs = SimpleNamespace(pooled=pooled, labels=labels, maps=maps)
    attrs = torch.tensor([[1.0, 0, 1], [0, 1, 1], [1, 1, 0]])
    got = qpm_metrics(head, fs, attrs, k=2, n_pairs=2)
    pred = head(pooled).argmax(1)
    z = head.normalize(pooled)
    assert got.accuracy == pytest.approx(float((pred == labels).float().mean()))
    assert (got.features_used, got.per_class) == (3, 2.0)
    assert got.sid == pytest.approx(diversity_at_k(maps[:, [0, 2, 5]], W, pred, k=2,
                                                   scale_invariant=True))
    assert got.class_independence == pytest.approx(class_independence(z, labels, 3))
    assert got.contrastiveness == pytest.approx(contrastiveness(z))
    assert got.structural_grounding == pytest.approx(structural_grounding(W, attrs, n_pairs=2))
