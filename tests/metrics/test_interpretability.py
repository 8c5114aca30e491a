"""Interpretability metrics: loop references, analytic extremes and bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.metrics.interpretability import (
    attribute_alignment,
    class_independence,
    compactness,
    dependence,
    diversity_at_k,
    feature_correlation,
    part_alignment,
)


def test_compactness_counts():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, -1.0, 0.0], [3.0, 0.0, 1.0, 0.0]])
    c = compactness(w)
    assert c.features_used == 2 and c.per_class_counts == (2, 1, 2)
    assert c.per_class == pytest.approx(5 / 3) and c.sparsity == pytest.approx(7 / 12)


def reference_diversity(maps, weight, predicted, k, scale_invariant):
    scores = []
    for i in range(maps.shape[0]):
        row = weight[predicted[i]]
        if int((row != 0).sum()) < k:
            continue
        top = sorted((j for j in range(len(row)) if row[j] != 0), key=lambda j: -float(row[j]))[:k]
        soft = []
        for f in top:
            m = maps[i, f].flatten().double()
            if scale_invariant:
                m = m / max(float(m.abs().mean()), 1e-5)
            soft.append(torch.softmax(m, 0))
        scores.append(float(torch.stack(soft).amax(0).sum()) / k)
    return sum(scores) / len(scores)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 9999), k=st.integers(1, 3), si=st.booleans())
def test_diversity_matches_reference(seed, k, si):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.relu(torch.randn(5, 4, 3, 3, generator=gen) * 3)
    weight = torch.randn(3, 4, generator=gen) * (torch.rand(3, 4, generator=gen) > 0.2)
    weight[0] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # class 0 always qualifies
    predicted = torch.randint(0, 3, (5,), generator=gen)
    predicted[0] = 0
    got = diversity_at_k(maps, weight, predicted, k=k, scale_invariant=si)
    assert got == pytest.approx(reference_diversity(maps, weight, predicted, k, si), rel=1e-5)


def test_diversity_extremes():
    k, weight, predicted = 3, torch.ones(1, 3), torch.zeros(1, dtype=torch.long)
    apart = torch.zeros(1, 3, 4, 4)
    for f in range(3):
        apart[0, f, f, f] = 50.0
    same = torch.zeros(1, 3, 4, 4)
    same[0, :, 0, 0] = 50.0
    assert diversity_at_k(apart, weight, predicted, k) == pytest.approx(1.0, abs=1e-6)
    assert diversity_at_k(same, weight, predicted, k) == pytest.approx(1 / k, abs=1e-6)
    with pytest.raises(ValueError, match="non-zero weights"):
        diversity_at_k(apart, torch.tensor([[1.0, 0.0, 0.0]]), predicted, k=2)
    with pytest.raises(ValueError, match="channels"):
        diversity_at_k(apart, torch.ones(1, 4), predicted, k=2)


def test_dependence_hand_example():
    f = torch.tensor([[1.0, 1.0, 2.0], [0.0, 3.0, 1.0]])
    w = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    pred = torch.tensor([0, 1])
    # image 0: contributions (1, 1, 0) → 0.5; image 1: (0, 3, 1) → 0.75
    assert dependence(f, w, pred) == pytest.approx(0.625)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        dependence(f, w, torch.tensor([0, 2]))


def test_class_independence_extremes():
    labels = torch.arange(40) % 4
    detectors = torch.nn.functional.one_hot(labels, 4).float()  # each feature fires for one class
    assert class_independence(detectors, labels) == pytest.approx(0.0)
    shared = torch.stack([torch.arange(40) // 4 % 2] * 3, 1).float()  # same distribution in every class
    shared[:, 1] += 1
    ci = class_independence(shared, labels)
    assert ci == pytest.approx(1 - 1 / 4)


def test_feature_correlation_extremes():
    orth = torch.eye(4)
    assert feature_correlation(orth) == pytest.approx(0.0)
    dup = torch.rand(10, 3)
    dup[:, 2] = 2 * dup[:, 0]
    cos = torch.nn.functional.cosine_similarity
    second = cos(dup[:, 1], dup[:, 0], dim=0).clamp_min(0).max(cos(dup[:, 1], dup[:, 2], dim=0))
    assert feature_correlation(dup) == pytest.approx((1 + 1 + float(second)) / 3, rel=1e-6)


def test_attribute_alignment_of_an_indicator_feature():
    attrs = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0], [0, 0]], dtype=torch.bool)
    feats = attrs[:, :1].float()  # feature 0 = attribute 0's indicator
    res = attribute_alignment(torch.cat([feats, torch.rand(5, 1)], 1), attrs)
    # μ⁺ − μ⁻ = 1, mean(f − min f) = 2/5 → 2.5
    assert float(res.per_feature[0]) == pytest.approx(2.5) and int(res.best_attribute[0]) == 0


def test_part_alignment_of_maps_that_copy_the_masks():
    part_map = torch.zeros(2, 8, 8, dtype=torch.uint8)
    part_map[0, :4, :4] = 1
    part_map[1, :4, :4] = 1
    part_map[1, 4:, 4:] = 2
    maps = torch.zeros(2, 2, 4, 4)
    maps[:, 0, :2, :2] = 1.0  # feature 0 fires exactly on part 1
    maps[:, 1] = 1.0  # feature 1 fires everywhere
    res = part_alignment(maps, part_map, n_parts=2)
    assert float(res.mass[0, 0]) == pytest.approx(1.0) and int(res.best_part[0]) == 0
    assert torch.allclose(res.chance, torch.tensor([0.25, 0.25]))
    assert float(res.mass[1, 0]) == pytest.approx(0.25) and float(res.mass[1, 1]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="non-negative"):
        part_alignment(-maps, part_map, 2)
    with pytest.raises(ValueError, match="multiple"):
        part_alignment(torch.ones(2, 2, 3, 3), part_map, 2)
    with pytest.raises(ValueError, match="NaN"):
        part_alignment(maps * float("nan"), part_map, 2)


def test_metrics_of_a_trained_layer_raise_no_autograd_warning():
    import warnings

    weight = torch.nn.Parameter(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    features = torch.tensor([[1.0, 1.0], [1.0, 3.0]], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a tensor that needs grad becomes a float
        assert dependence(features, weight, torch.tensor([0, 1])) == pytest.approx(1.0)
        compactness(weight)
