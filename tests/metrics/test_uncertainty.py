"""Uncertainty metrics: entropies, correction curves, relative AUC, Pearson table, timing."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from companion.metrics import uncertainty as U

values = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=30)


def test_binary_entropy_analytic():
    p = torch.tensor([0.5, 0.25, 0.75])
    assert torch.allclose(U.binary_entropy(p)[0], torch.tensor(1.0))
    h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert torch.allclose(U.binary_entropy(p)[1:], torch.tensor([h, h], dtype=torch.float32))


def test_mask_entropy_matches_a_loop():
    torch.manual_seed(0)
    prob = torch.rand(3, 5, 6)
    out = U.mask_entropy(prob)
    for i in range(3):
        num = den = 0.0
        for p in prob[i].flatten().tolist():
            num += p * (-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))
            den += p
        assert out[i].item() == pytest.approx(num / den, rel=1e-5)
    assert U.mask_entropy(torch.full((4, 4), 0.5)).item() == pytest.approx(1.0)
    assert U.mask_entropy((torch.rand(8, 8) > 0.5).float()).item() < 1e-3


def test_mask_entropy_rejects_logits():
    with pytest.raises(ValueError, match="probabilities"):
        U.mask_entropy(torch.tensor([[-2.0, 3.0]]))


def _brute_force(cur, ref, unc, ratios):
    order = sorted(range(len(cur)), key=lambda i: (-unc[i], i))
    out = []
    for r in ratios:
        k = int(np.rint(r * len(cur)))
        fixed = list(cur)
        for i in order[:k]:
            fixed[i] = ref[i]
        out.append(np.mean(fixed))
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_correction_curve_matches_brute_force(data):
    n = data.draw(st.integers(1, 25))
    arr = st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n)
    cur, ref, unc = data.draw(arr), data.draw(arr), data.draw(arr)
    ratios = np.linspace(0, 1, 11)
    curve = U.correction_curve(cur, ref, unc, ratios)
    assert np.allclose(curve.miou, _brute_force(cur, ref, unc, ratios))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_oracle_dominates_every_ranking(data):
    n = data.draw(st.integers(2, 25))
    arr = st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n)
    cur, ref, unc = (np.array(data.draw(arr)) for _ in range(3))
    ref = np.maximum(ref, cur)  # a refinement never hurts
    oracle = U.oracle_curve(cur, ref)
    curve = U.correction_curve(cur, ref, unc, oracle.ratios)
    assert np.all(oracle.miou >= curve.miou - 1e-12)
    if not np.allclose(ref, cur):
        assert U.relative_auc(curve, oracle) <= 1 + 1e-9
        assert U.relative_auc(oracle, oracle) == pytest.approx(1.0)


def test_relative_auc_of_the_reverse_ranking_is_smallest():
    cur = np.zeros(10)
    ref = np.linspace(0.1, 1.0, 10)
    oracle = U.oracle_curve(cur, ref)
    worst = U.correction_curve(cur, ref, -ref)
    assert U.relative_auc(worst, oracle) < U.relative_auc(U.correction_curve(cur, ref, np.zeros(10)),
                                                          oracle) + 1e-12
    with pytest.raises(ValueError, match="gains nothing"):
        U.relative_auc(oracle, U.oracle_curve(cur, cur))


def test_correction_curve_bad_input():
    with pytest.raises(ValueError, match="same length"):
        U.correction_curve([0.1, 0.2], [0.3], [0.5, 0.1])
    with pytest.raises(ValueError, match="NaN"):
        U.correction_curve([0.1], [0.3], [float("nan")])
    with pytest.raises(ValueError, match="fractions"):
        U.correction_curve([0.1], [0.3], [0.2], ratios=[1.5])


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 40), st.integers(0, 10_000))
def test_pearson_table_matches_scipy(n, seed):
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    table = U.pearson_table({"a": a, "b": torch.tensor(b), "c": c})
    assert table["a", "b"] == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-9)
    assert table["c", "a"] == pytest.approx(stats.pearsonr(c, a)[0], abs=1e-9)
    assert table["b", "b"] == pytest.approx(1.0)
    assert len(table.table().rows) == 3 and ">1.00</td>" in table._repr_html_()


def test_pearson_table_bad_input():
    with pytest.raises(ValueError, match="constant"):
        U.pearson_table({"a": [1.0, 2.0, 3.0], "b": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="same length"):
        U.pearson_table({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0]})
