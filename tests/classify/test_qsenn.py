"""Q-SENN: ternary quantisation against brute force, the bias rule, the fitter and its iterations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.classify import QSENN
from companion.classify.qsenn import paper_schedule, qsenn_bias, quantise_ternary
from companion.classify.sparse import SparseLayer


def informative_data(n=400, d=12, c=4, informative=(2, 5, 7, 9), seed=0):
    """Classes differ only in the ``informative`` columns (each up for one class, down for the
    next, noisy); the rest is noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.rand(n, d, generator=gen)
    for j, col in enumerate(informative):
        x[:, col] += 1.0 * (y == j % c).float() - 0.5 * (y == (j + 1) % c).float()
    return x, y


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 3), st.integers(0, 10_000))
def test_quantisation_keeps_signs_and_exactly_k_times_c_entries(n_classes, n_features, k, seed):
    k = min(k, n_features)
    gen = torch.Generator().manual_seed(seed)
    # small integers: ties across the threshold are frequent
    w = torch.randint(-3, 4, (n_classes, n_features), generator=gen).float()
    w[w == 0] = 0.5
    t = quantise_ternary(w, k)
    kept = t.weight != 0
    assert int(kept.sum()) == k * n_classes
    assert t.m > 0 and set(t.weight.abs()[kept].tolist()) == {t.m}
    assert torch.equal(torch.sign(t.weight[kept]), torch.sign(w[kept]))  # no sign flip
    assert t.m == pytest.approx(float(w.abs()[kept].mean()))
    # every kept |w| ≥ every dropped |w|, and τ separates them (ties: τ equals the tied value)
    if (~kept).any():
        assert w.abs()[kept].min() >= w.abs()[~kept].max()
        assert float(w.abs()[kept].min()) >= t.threshold >= float(w.abs()[~kept].max())
    ordered = torch.sort(w.abs().flatten(), descending=True).values
    n = k * n_classes
    tied = n < w.numel() and ordered[n - 1] == ordered[n]
    assert (t.n_tied > 0) == bool(tied)


def test_the_largest_negative_weight_stays_negative():
    """The released code's bucketize gives the entry equal to −max|w| the value +m."""
    w = torch.tensor([[-4.0, 1.0, 0.2], [3.0, -0.1, 2.0]])
    t = quantise_ternary(w, 1)
    assert t.weight[0, 0] < 0 and t.weight[1, 0] > 0
    assert t.threshold == pytest.approx((3.0 + 2.0) / 2) and t.m == pytest.approx(3.5)


def test_all_equal_magnitudes_keep_exactly_k_times_c_by_position():
    w = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    t = quantise_ternary(w, 1)
    assert int((t.weight != 0).sum()) == 2 and t.m == 1.0 and t.n_tied == 4
    assert t.weight.flatten().tolist() == [1.0, -1.0, 0.0, 0.0, 0.0, 0.0]  # row-major order
    assert t.threshold == 1.0


def test_fewer_non_zeros_than_k_times_c_are_all_kept():
    w = torch.tensor([[2.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    t = quantise_ternary(w, 2)
    assert t.threshold == 0.0 and t.weight.tolist() == [[1.5, 0, 0], [0, -1.5, 0]]


def test_a_class_without_weights_and_the_bias_rule():
    # class 2 gets no weight; classes: net +2, 0, 0 → d = 2, 0, 0
    w = torch.tensor([[5.0, 4.0, 0.0], [3.0, -3.0, 0.0], [0.1, 0.0, 0.0]])
    t = quantise_ternary(w, 4 / 3)
    assert (t.weight[2] == 0).all() and int((t.weight != 0).sum()) == 4
    bias = qsenn_bias(t.weight, torch.tensor([0.5, -2.0, 1.0]))
    # B = 2, b_c = B − d_c·2B/max d: the class with more net positives gets −B
    assert bias.tolist() == pytest.approx([-2.0, 2.0, 2.0])


def test_bias_rule_without_net_differences_needs_no_division_by_zero():
    w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    bias = qsenn_bias(w, torch.tensor([0.3, -0.7]))
    assert torch.isfinite(bias).all() and bias.tolist() == pytest.approx([0.7, 0.7])
    assert qsenn_bias(w, torch.zeros(2)).tolist() == [0.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=8), st.floats(0.1, 5.0))
def test_bias_is_bounded_and_decreasing_in_net_count(nets, top):
    w = torch.zeros(len(nets), 6)
    for c, t in enumerate(nets):
        w[c, :abs(t)] = 1.0 if t > 0 else -1.0
    bias = qsenn_bias(w, torch.tensor([top] + [0.0] * (len(nets) - 1)))
    assert (bias.abs() <= top + 1e-5).all()
    order = torch.argsort(torch.tensor(nets), stable=True)
    assert (bias[order][1:] <= bias[order][:-1] + 1e-5).all()
    if max(nets) > min(nets):
        assert float(bias.min()) == pytest.approx(-top) and float(bias.max()) == pytest.approx(top)


@pytest.mark.parametrize("weight, k, message", [
    (torch.ones(2, 3), 4, r"k·n_c = 4·2 = 8 weights to keep, but the matrix has only 6"),
    (torch.zeros(2, 3), 1, r"the solution is all zero, so there is nothing to quantise"),
    (torch.ones(2, 3), 0, r"per_class \(k\) must be positive"),
])
def test_quantisation_errors(weight, k, message):
    with pytest.raises(ValueError, match=message):
        quantise_ternary(weight, k)


def test_paper_schedule():
    s = paper_schedule()
    assert [e for e, _ in s] == [10, 10, 10, 40]
    assert [lr for _, lr in s] == pytest.approx([1e-4, 9e-5, 8.1e-5, 7.29e-5])
    with pytest.raises(ValueError, match="at least one epoch"):
        paper_schedule((10, 0))


def test_qsenn_fit_gives_a_ternary_layer_on_the_informative_features():
    x, y = informative_data()
    q = QSENN(4, 2, n_lambdas=20, progress=False).fit(x, y)
    W = q.weight_
    assert sorted(q.selected_.tolist()) == [2, 5, 7, 9]
    assert int((W != 0).sum()) == 2 * 4 and set(W.abs().unique().tolist()) <= {0.0, q.ternary_.m}
    # each class's own feature is positive for it
    for c, col in enumerate((2, 5, 7, 9)):
        j = q.selected_.tolist().index(col)
        assert W[c, j] > 0
    assert float((q.predict(x) == y).float().mean()) > 0.95
    # the least regularised path entry, quantised
    assert torch.equal(q.dense_weight_, q.path_.weights[-1].float()) and len(q.constant_) == 0
    # refit with the same selection (as later iterations do) reuses it
    again = QSENN(4, 2, n_lambdas=20, progress=False).fit(x, y, selection=q.selection_)
    assert again.selection_ is q.selection_ and torch.equal(again.weight_, W)


@pytest.mark.parametrize("shift", [0.3, 1.0])
@pytest.mark.parametrize("epsilon", [1e-3, 0.05])
def test_a_refit_on_a_shorter_path_ends_at_the_whole_paths_last_entry(shift, epsilon):
    """A later iteration's refit down ``refit_lambdas`` points reaches the whole path's last
    entry, on features that moved (``shift``) as fine-tuning moves them: the same λ to the bit,
    the objective within the certified gaps, and W^d within the distance the gaps allow (the
    objective is λ(1 − α)-strongly convex in W, so a point with gap g lies within √(2g / μ) of
    the minimiser). Solved tightly, both routes give the same ternary layer at ε = 0.05."""
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(600) % 6
    x = torch.randn(600, 14, generator=gen)  # classes that overlap, as real features' do
    for j, col in enumerate((1, 2, 5, 7, 9, 11)):
        x[:, col] += 0.8 * (y == j).float() - 0.4 * (y == (j + 1) % 6).float()
    opts = dict(n_lambdas=30, epsilon=epsilon, progress=False)
    first = QSENN(6, 2, **opts).fit(x, y)
    moved = x + shift * torch.rand(x.shape, generator=gen) * (y[:, None] % 3 == 0)

    def refits(**kw):
        whole = QSENN(6, 2, **opts, **kw).fit(moved, y, selection=first.selection_, refit=True)
        short = QSENN(6, 2, refit_lambdas=5, **opts, **kw).fit(moved, y,
                                                               selection=first.selection_,
                                                               refit=True)
        return whole, short

    whole, short = refits()
    assert (len(whole.path_), len(short.path_)) == (30, 5)
    assert float(short.path_.lambdas[-1]) == float(whole.path_.lambdas[-1])
    assert float(short.path_.lambdas[0]) == float(whole.path_.lambdas[0])
    assert bool(short.path_.converged[-1]) and float(short.path_.gaps[-1]) <= short.tol
    p_whole, p_short = float(whole.path_.objectives[-1]), float(short.path_.objectives[-1])
    assert abs(p_whole - p_short) <= short.tol * max(p_whole, p_short)
    mu = float(whole.path_.lambdas[-1]) * (1 - whole.alpha)
    radius = sum((2 * float(q.path_.gaps[-1]) * float(q.path_.objectives[-1]) / mu) ** 0.5
                 for q in (whole, short))
    assert float((short.dense_weight_ - whole.dense_weight_).norm()) <= radius
    if epsilon < 0.01:  # nearly flat in W there: even a tight gap leaves W^d loose at τ
        return
    whole, short = refits(tol=1e-10)
    assert torch.allclose(short.dense_weight_, whole.dense_weight_, atol=1e-3)
    assert torch.equal(torch.sign(short.weight_), torch.sign(whole.weight_))
    assert short.ternary_.m == pytest.approx(whole.ternary_.m, rel=1e-3)
    # b^d is unique only up to a shift shared by all classes (the softmax ignores it): centred,
    # the two agree; the bias rule's scale B = max |b^d| reads the shift, so it is pinned less
    centred = [q.dense_bias_ - q.dense_bias_.mean() for q in (short, whole)]
    assert torch.allclose(*centred, atol=1e-3)
    assert torch.allclose(short.layer_.bias, whole.layer_.bias, rtol=0.06, atol=0.02)


def test_qsenn_bad_inputs():
    x, y = informative_data()
    with pytest.raises(ValueError, match=r"per_class \(k\) must lie in \[1, n_features=2\]"):
        QSENN(2, 3, progress=False).fit(x, y)
    with pytest.raises(ValueError, match=r"Only 3 of the 12 features vary.*fewer than n_features=4"):
        flat = x.clone()
        flat[:, 3:] = 1.0
        QSENN(4, 2, progress=False).fit(flat, y)


def test_a_selected_feature_that_stops_varying_gets_no_weight():
    """After fine-tuning a selected map can die: refitting keeps it with z = 0 and no weight."""
    x, y = informative_data()
    q = QSENN(4, 2, n_lambdas=10, progress=False).fit(x, y)
    dead = q.selected_[1]
    flat = x.clone()
    flat[:, dead] = 0.5
    again = QSENN(4, 2, n_lambdas=10, progress=False).fit(flat, y, selection=q.selection_)
    assert again.constant_.tolist() == [int(dead)]
    assert (again.weight_[:, 1] == 0).all() and 1 <= int((again.weight_ != 0).sum()) <= 8
    z = again.layer_.normalize(flat)
    assert torch.isfinite(z).all() and (z[:, 1] == 0).all()
    flat[:, q.selected_] = 0.5
    with pytest.raises(ValueError, match=r"all 4 selected features are constant"):
        QSENN(4, 2, n_lambdas=10, progress=False).fit(flat, y, selection=q.selection_)


def tiny_cnn_and_data():
    """A tiny CNN (seeded) and 96 images of 3 classes, each class a bright square of its own."""
    from torch.utils.data import TensorDataset

    from companion.models import Classifier, SmallCNN

    gen = torch.Generator().manual_seed(0)
    n, c = 96, 3
    y = torch.arange(n) % c
    images = torch.rand(n, 3, 16, 16, generator=gen) * 0.2
    for k in range(c):
        images[y == k, k, 4 * k:4 * k + 6, 4 * k:4 * k + 6] += 1.0
    ds = TensorDataset(images, y)

    class Data:
        train = eval_train = test = ds

    torch.manual_seed(0)
    return Classifier(SmallCNN(width=8), c), Data


def test_iterate_refits_on_fine_tuned_features(tmp_path):
    """Two iterations on a tiny CNN: the selection stays, every layer is ternary with k·n_c."""
    model, Data = tiny_cnn_and_data()
    c = model.num_classes
    q = QSENN(4, 2, n_lambdas=10, progress=False)
    out = q.iterate(model, Data, paper_schedule((1, 1), lr=1e-3), batch_size=32, dropout=0.0)
    assert len(q.iterations_) == 2 and out.head is q.layer_
    first, second = q.iterations_
    assert second.lr == pytest.approx(0.9e-3)
    for it in q.iterations_:
        assert 1 <= int((it.ternary.weight != 0).sum()) <= 2 * c and it.ternary.m > 0
        assert set(it.ternary.weight.abs().unique().tolist()) <= {0.0, it.ternary.m}
        assert 0 <= it.start_accuracy <= 1 and 0 <= it.accuracy <= 1
    assert torch.equal(out.head.selection, q.selection_.indices)


def test_iterate_can_start_from_the_fit_on_the_same_features(monkeypatch):
    """refit_first=False: the first round reuses fit(model's features), the same layers result
    with one path fewer."""
    import companion.classify.qsenn as qsenn_module
    from companion.features import extract_features

    runs = []
    path = qsenn_module.elastic_net_path
    monkeypatch.setattr(qsenn_module, "elastic_net_path",
                        lambda *a, **kw: runs.append(kw["lambdas"]) or path(*a, **kw))
    layers = {}
    for refit in (True, False):
        model, Data = tiny_cnn_and_data()
        q = QSENN(4, 2, n_lambdas=10, refit_lambdas=4, progress=False)
        if not refit:
            q.fit(extract_features(model, Data.eval_train, progress=False))
        runs.clear()
        q.iterate(model, Data, paper_schedule((1, 1), lr=1e-3), batch_size=32, dropout=0.0,
                  refit_first=refit)
        assert len(runs) == 2 - (not refit)
        # iteration 0 walks the whole path, iteration 1 the shorter one
        assert [None if r is None else len(r) for r in runs] == [None, 4][int(not refit):]
        layers[refit] = [(it.ternary.weight, it.bias, it.accuracy) for it in q.iterations_]
    for (w, b, a), (w2, b2, a2) in zip(layers[True], layers[False], strict=True):
        assert torch.equal(w, w2) and torch.allclose(b, b2) and a == pytest.approx(a2)



def test_iterate_reads_the_test_accuracies_from_one_pass_per_backbone(monkeypatch):
    """The new layer's start and the fine-tuned model of the round before share one test pass;
    the accuracies are evaluate()'s on the model, and the final test features are kept."""
    import sys

    from companion.features import extract_features
    from companion.train import evaluate

    model, Data = tiny_cnn_and_data()

    class Counted(torch.utils.data.Dataset):  # the test split, counting its passes
        passes = 0

        def __len__(self):
            return len(Data.test)

        def __getitem__(self, i):
            Counted.passes += i == 0
            return Data.test[i]

    class Split:
        train = eval_train = Data.train
        test = Counted()

    seen = []  # evaluate() of each round's model before and after its fine-tuning
    finetune_module = sys.modules["companion.classify.finetune"]  # the name is the function's
    finetune = finetune_module.finetune

    def recorded(m, layer, data, **kwargs):
        before = evaluate(m, Data.test)["accuracy"]
        history = finetune(m, layer, data, **kwargs)
        seen.append((before, evaluate(m, Data.test)["accuracy"]))
        return history

    monkeypatch.setattr(finetune_module, "finetune", recorded)
    q = QSENN(4, 2, n_lambdas=10, progress=False)
    out = q.iterate(model, Split, paper_schedule((1, 1, 1), lr=1e-3), batch_size=32, dropout=0.0)
    assert Counted.passes == 1 + 3  # the dense backbone, then one per fine-tuned model
    assert [(it.start_accuracy, it.accuracy) for it in q.iterations_] == \
        [pytest.approx(pair, abs=1e-9) for pair in seen]
    final = extract_features(out, Data.test, progress=False)
    assert torch.equal(q.test_features_.pooled, final.pooled)
    assert torch.equal(q.test_features_.labels, final.labels)
    # the last fit's state belongs to the backbone before the last fine-tuning: its layer, rebuilt
    # from that state, gives the last round's start accuracy on fit_test_features_
    rebuilt = SparseLayer(q.selected_, q.ternary_.weight, q.mean_, q.std_, q.iterations_[-1].bias)
    with torch.no_grad():
        logits = rebuilt(q.fit_test_features_.pooled)
    assert float((logits.argmax(1) == q.fit_test_features_.labels).double().mean()) == \
        pytest.approx(q.iterations_[-1].start_accuracy, abs=1e-9)
    assert not torch.equal(q.fit_test_features_.pooled, q.test_features_.pooled)
