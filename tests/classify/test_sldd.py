"""SLDD recipe: pruning and path-entry choice against brute force, selection finds the signal."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.classify import SLDD, NotFittedError
from companion.classify.sldd import choose_path_entry, keep_largest, select_features
from companion.solvers.elastic_net import ElasticNetPath


def informative_data(n=400, d=12, c=4, informative=(2, 5, 7, 9), seed=0):
    """Classes differ only in the ``informative`` columns; the rest is noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.rand(n, d, generator=gen)
    for j, col in enumerate(informative):
        x[:, col] += 2.0 * (y == j % c).float()
    return x, y


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12), st.integers(0, 12))
def test_keep_largest_matches_brute_force(values, n_keep):
    w = torch.tensor(values, dtype=torch.float64).view(1, -1)
    n_keep = min(n_keep, w.numel())
    out = keep_largest(w, n_keep)
    kept = out != 0
    assert int(kept.sum()) <= n_keep and torch.equal(out[kept], w[kept])
    # every kept |w| is at least every dropped non-zero |w|
    dropped = (~kept) & (w != 0)
    if kept.any() and dropped.any():
        assert w[kept].abs().min() >= w[dropped].abs().max()
    assert int(kept.sum()) == min(n_keep, int((w != 0).sum()))


def fake_path(per_class_counts, n_classes=2, n_features=10):
    weights = torch.zeros(len(per_class_counts), n_classes, n_features)
    for i, k in enumerate(per_class_counts):
        weights[i, :, :k] = 1.0
    k = len(per_class_counts)
    return ElasticNetPath(torch.linspace(1, 0.1, k), weights, torch.zeros(k, n_classes),
                          torch.zeros(k), torch.zeros(k), None, torch.zeros(k, dtype=torch.long),
                          torch.ones(k, dtype=torch.bool), 0.99, False, 0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 10), min_size=1, max_size=15).map(lambda v: [0] + v),
       st.integers(1, 5), st.sampled_from([0.5, 1.0]))
def test_choose_path_entry_matches_brute_force(counts, per_class, drop_rate):
    path = fake_path(counts)
    index = choose_path_entry(path, per_class, drop_rate)
    limit = per_class / drop_rate
    allowed = [i for i, c in enumerate(counts) if c <= limit]
    best = max(counts[i] for i in allowed)
    assert index == min(i for i in allowed if counts[i] == best)


def test_select_features_finds_the_informative_columns():
    x, y = informative_data()
    sel = select_features(x, y, 4, n_lambdas=40, device="cpu", progress=False)
    assert sorted(sel.indices.tolist()) == [2, 5, 7, 9]
    assert torch.all(sel.entry[1:] >= sel.entry[:-1])


def test_select_features_skips_constant_features():
    x, y = informative_data()
    x[:, [0, 2]] = 0.0  # a channel that never fires, and an informative one switched off
    sel = select_features(x, y, 3, n_lambdas=40, device="cpu", progress=False)
    assert sorted(sel.indices.tolist()) == [5, 7, 9]
    assert sel.path.weights.shape[-1] == x.shape[1] and not sel.path.weights[..., [0, 2]].any()
    # asked for more features than ever enter the path: the rest are varying ones, never constant
    more = select_features(x, y, x.shape[1] - 2, n_lambdas=3, device="cpu", progress=False)
    assert not set(more.indices.tolist()) & {0, 2}


def test_sldd_fit_builds_a_sparse_layer_with_k_per_class():
    x, y = informative_data(d=16, c=4, informative=(1, 3, 4, 8, 11, 12, 14, 15))
    sldd = SLDD(n_features=8, per_class=2, n_lambdas=30, device="cpu", progress=False)
    with pytest.raises(NotFittedError, match="call fit"):
        _ = sldd.weight_
    assert sldd.fit((x, y)) is sldd
    layer = sldd.layer_
    assert layer.num_features == 8 and int((layer.weight != 0).sum()) <= 2 * 4
    assert sldd.path_.per_class[sldd.entry_] <= 2 / 0.5
    assert torch.equal(sldd.selected_, layer.selection) and sldd.weight_ is layer.weight
    assert not any(p.requires_grad for p in [layer.weight, layer.bias])
    assert set(layer.selection.tolist()) == {1, 3, 4, 8, 11, 12, 14, 15}
    # the layer reproduces the path's decision on the training features
    acc = (layer(x).argmax(1) == y).float().mean()
    assert acc > 0.9
    assert torch.allclose(layer.mean, x[:, layer.selection].mean(0))


def test_sldd_fit_reuses_a_given_selection_and_path():
    x, y = informative_data(d=16, c=4, informative=(1, 3, 4, 8, 11, 12, 14, 15))
    opts = dict(n_lambdas=30, device="cpu", progress=False)
    fitted = SLDD(n_features=8, per_class=2, **opts).fit((x, y))
    reused = SLDD(n_features=8, per_class=2, **opts).fit(
        (x, y), selection=fitted.selection_, path=fitted.path_)
    assert reused.selection_ is fitted.selection_ and reused.path_ is fitted.path_
    assert torch.equal(reused.layer_.weight, fitted.layer_.weight)
    with pytest.raises(ValueError, match="n_features=6"):
        SLDD(n_features=6, per_class=2, **opts).fit((x, y), selection=fitted.selection_)
    other = select_features(x, y, 5, n_lambdas=10, device="cpu", progress=False)
    with pytest.raises(ValueError, match="fitted on the selected features"):
        SLDD(n_features=5, per_class=2, **opts).fit((x, y), selection=other, path=fitted.path_)


def test_bad_sizes_and_inputs_are_rejected():
    x, y = informative_data(d=6, informative=(0, 2, 3, 5))
    with pytest.raises(ValueError, match=r"n_features \(n_f\) must lie in \[1, 6\]"):
        SLDD(n_features=7, per_class=2, progress=False).fit(x, y)
    with pytest.raises(ValueError, match=r"per_class \(k\)"):
        SLDD(n_features=3, per_class=4, progress=False).fit(x, y)
    nan = x.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        select_features(nan, y, 3, progress=False)
    flat = x.clone()
    flat[:, 1:] = 0.0
    with pytest.raises(ValueError, match="Only 1 of the 6 features vary"):
        SLDD(n_features=3, per_class=2, progress=False).fit(flat, y)
    with pytest.raises(ValueError, match="labels must lie"):
        select_features(x, y - 1, 3, progress=False)


def test_sldd_fit_validates_labels_and_width():
    x, y = informative_data(d=6, informative=(0, 2, 3, 5))
    sldd = SLDD(n_features=3, per_class=2, n_lambdas=10, progress=False)
    with pytest.raises(ValueError, match="integer class indices"):
        sldd.fit(x, y.float())
    with pytest.raises(ValueError, match="non-negative"):
        sldd.fit(x, y - 1)
    with pytest.raises(ValueError, match="one label per sample"):
        sldd.fit(x, y[:-1])
    sldd.fit(x, y)
    with pytest.raises(ValueError, match="fitted on 6 features"):
        sldd.predict(x[:, :5])
    assert (sldd.predict(x) == sldd.layer_(x).argmax(1)).all()
