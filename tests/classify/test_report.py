"""The report (evaluate, compare, claims) and QPM's metrics against analytic cases and invariants."""

import numpy as np
import pytest
import torch

from companion.classify.report import (
    Cited,
    Claim,
    compare,
    contrastive_pairs,
    contrastiveness,
    evaluate,
    structural_grounding,
)
from companion.features import FeatureSet


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


def test_evaluate_reads_the_features_and_weights_the_head_decides_with():
    from companion.classify.sparse import SparseLayer
    from companion.metrics.interpretability import class_independence, diversity_at_k

    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(60, 6, 4, 4, generator=gen)
    labels = torch.arange(60) % 3
    pooled = maps.mean((2, 3))
    W = torch.tensor([[1.0, 1, 0], [0, 1, 1], [1, 0, 1]])
    head = SparseLayer(torch.tensor([0, 2, 5]), W, pooled[:, [0, 2, 5]].mean(0),
                       pooled[:, [0, 2, 5]].std(0), trainable_norm=False)
    fs = FeatureSet(pooled=pooled, labels=labels, maps=maps)
    attrs = torch.tensor([[1.0, 0, 1], [0, 1, 1], [1, 1, 0]])
    got = evaluate(head, fs, class_attributes=attrs, k=2, n_pairs=2)
    pred = head(pooled).argmax(1)
    z = head.normalize(pooled)
    assert got.accuracy == pytest.approx(float((pred == labels).float().mean()))
    assert (got.features_used, got.per_class) == (3, 2.0)
    assert got.sid == pytest.approx(diversity_at_k(maps[:, [0, 2, 5]], W, pred, k=2,
                                                   scale_invariant=True))
    assert got.class_independence == pytest.approx(class_independence(z, labels, 3))
    assert got.contrastiveness == pytest.approx(contrastiveness(z))
    assert got.structural_grounding == pytest.approx(structural_grounding(W, attrs, n_pairs=2))
    assert got.alignment is None and got.own_parts is None  # no part maps given


def test_contrastiveness_of_too_many_features_is_not_computed_and_never_a_verdict():
    gen = torch.Generator().manual_seed(0)
    pooled, labels = torch.rand(30, 12, generator=gen), torch.arange(30) % 3
    head = torch.nn.Linear(12, 3)
    got = evaluate(head, FeatureSet(pooled, labels), max_contrastive_features=10)
    assert got.contrastiveness is None and got.sid is None  # no maps: no SID either
    claim = Claim("contrastive", got.contrastiveness, 0.5, "a reason")
    assert claim.holds is None and claim.verdict == "not computed"
    assert Claim("x", 0.6, 0.5, "r").verdict == "holds"
    assert Claim("x", 0.4, 0.5, "r").verdict == "fails"


def test_alignment_with_known_parts():
    from companion.classify.sparse import SparseLayer

    # feature 0 fires exactly on part 1, feature 1 on part 2; class c uses feature c
    part_map = torch.zeros(4, 4, 4, dtype=torch.uint8)
    part_map[:, :2, :2], part_map[:, 2:, 2:] = 1, 2
    maps = torch.zeros(4, 2, 4, 4)
    maps[:, 0, :2, :2], maps[:, 1, 2:, 2:] = 1.0, 1.0
    pooled, labels = maps.mean((2, 3)) + torch.rand(4, 2) * 0.01, torch.tensor([0, 1, 0, 1])
    head = SparseLayer(torch.tensor([0, 1]), torch.eye(2), torch.zeros(2), torch.ones(2))
    got = evaluate(head, FeatureSet(pooled, labels, maps), k=1, part_map=part_map, n_parts=2,
                   class_parts=torch.tensor([[1, 0], [0, 1]]))
    assert got.alignment == pytest.approx(1.0) and got.alignment_lift == pytest.approx(4.0)
    assert got.own_parts == 1.0 and got.own_parts_chance == 0.5
    with pytest.raises(ValueError, match="part_map has 3 images"):
        evaluate(head, FeatureSet(pooled, labels, maps), k=1, part_map=part_map[:3], n_parts=2)


def test_compare_renders_an_html_table_with_each_paper_number_attributed():
    gen = torch.Generator().manual_seed(0)
    pooled, labels = torch.rand(30, 4, generator=gen), torch.arange(30) % 3
    a = evaluate(torch.nn.Linear(4, 3), FeatureSet(pooled, labels), name="dense", k=2)
    table = compare(a, paper={"paper": {"accuracy": Cited(0.839, "QPM, Table 2")}})
    page = table._repr_html_()
    assert page.startswith("<table>") and "|" not in page
    assert "0.839<sup>1</sup>" in page and "<li>QPM, Table 2</li>" in page
    assert "[1] QPM, Table 2" in repr(table) and table["dense"] is a
    with pytest.raises(ValueError, match="unknown metrics"):
        compare(a, paper={"paper": {"acc": Cited(0.8, "x")}})


def test_a_claim_with_an_interval_is_within_noise_when_it_straddles_the_threshold():
    assert Claim("x", 0.6, 0.5, "r", interval=(0.55, 0.7)).verdict == "holds"
    assert Claim("x", 0.6, 0.5, "r", interval=(0.45, 0.7)).verdict == "within noise"
    assert Claim("x", 0.6, 0.5, "r", interval=(0.45, 0.7)).holds is None
    assert Claim("x", 0.4, 0.5, "r", interval=(0.3, 0.49)).verdict == "fails"
    assert "[0.450, 0.700]" in Claim("x", 0.6, 0.5, "r", interval=(0.45, 0.7)).shown
    assert Claim("x", 0.6, 0.5, "r", interval=(0.45, 0.7)).within_noise
    assert not Claim("x", 0.6, 0.5, "r", interval=(0.55, 0.7)).within_noise
    assert not Claim("x", 0.6, 0.5, "r").within_noise


def test_bootstrap_interval_of_a_coin_matches_the_normal_approximation():
    import numpy as np

    from companion.metrics import bootstrap_interval

    flips = np.random.default_rng(1).random(400) < 0.5
    low, high = bootstrap_interval(lambda idx: flips[idx].mean(), len(flips), n_boot=2000).bounds
    half = 1.96 * np.sqrt(flips.mean() * (1 - flips.mean()) / len(flips))
    assert low < flips.mean() < high
    assert high - low == pytest.approx(2 * half, rel=0.15)
    constant = np.ones(50)
    assert bootstrap_interval(lambda idx: constant[idx].mean(), 50, n_boot=20).bounds == (1.0, 1.0)
