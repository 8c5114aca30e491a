"""Feature Diversity Loss against a loop-by-loop reference and its defining behaviour."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.classify.sparse import SparseLayer
from companion.losses import decision_maps, diversity_criterion, feature_diversity_loss
from companion.models import Classifier, create_backbone


def reference_loss(maps, logits, weight, beta):
    """𝓛_div written out image by image, position by position."""
    b_size, n_f, h, w = maps.shape
    total = 0.0
    for b in range(b_size):
        c = int(logits[b].argmax())
        a = weight[c].abs()
        w_hat = a / (a.norm() + 1e-5)
        means = [float(maps[b, f].mean()) for f in range(n_f)]
        top = max(max(means), 1e-6)
        soft = [torch.softmax(maps[b, f].flatten(), 0) for f in range(n_f)]
        for p in range(h * w):
            total += max(float(w_hat[f]) * means[f] / top * float(soft[f][p]) for f in range(n_f))
    return -beta * total / b_size


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 9999), b=st.integers(1, 3), n_f=st.integers(1, 4), c=st.integers(2, 4),
       beta=st.sampled_from([0.196, 1.0]))
def test_matches_reference(seed, b, n_f, c, beta):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.relu(torch.randn(b, n_f, 3, 3, generator=gen) * 2)
    logits = torch.randn(b, c, generator=gen)
    weight = torch.randn(c, n_f, generator=gen)
    got = float(feature_diversity_loss(maps, logits, weight, beta))
    assert got == pytest.approx(reference_loss(maps, logits, weight, beta), rel=1e-5, abs=1e-7)


def test_diverse_maps_score_lower_than_overlapping_maps():
    # two equally weighted, equally strong features: peaked apart is better than peaked together
    apart, together = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    apart[0, 0, 0, 0] = apart[0, 1, 3, 3] = 8.0
    together[0, 0, 0, 0] = together[0, 1, 0, 0] = 8.0
    logits, weight = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert feature_diversity_loss(apart, logits, weight) < feature_diversity_loss(together, logits, weight)
    # a feature the predicted class does not use cannot help
    unused = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert feature_diversity_loss(apart, logits, unused) == pytest.approx(
        feature_diversity_loss(together, logits, unused))


def test_decision_maps_and_criterion_use_the_heads_features():
    torch.manual_seed(0)
    model = Classifier(create_backbone("small_cnn", width=8), num_classes=3)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    logits, _, maps = model.forward_all(x)
    used, weight = decision_maps(model.head, maps)
    assert used is maps and weight is model.head.weight
    layer = SparseLayer(torch.tensor([6, 2]), torch.ones(3, 2), torch.zeros(2), torch.ones(2))
    used, weight = decision_maps(layer, maps)
    assert torch.equal(used, maps[:, [6, 2]]) and weight is layer.weight
    total, logs = diversity_criterion(0.5)(model, (x, y))
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert float(total.detach()) == pytest.approx(float(ce.detach()) + logs["diversity"], rel=1e-5)
    assert logs["diversity"] == pytest.approx(
        feature_diversity_loss(maps, logits, model.head.weight, 0.5).item(), rel=1e-5)
    with pytest.raises(TypeError, match="SparseLayer"):
        decision_maps(torch.nn.Identity(), maps)


def test_criterion_adds_and_logs_extra_terms():
    torch.manual_seed(0)
    model = Classifier(create_backbone("small_cnn", width=8), num_classes=3)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    seen = {}

    def mean_map(maps, logits, weight, labels):
        seen.update(maps=maps.shape, logits=logits.shape, weight=weight.shape, labels=labels)
        return 2.0 * maps.mean()

    plain, _ = diversity_criterion(0.5)(model, (x, y))
    total, logs = diversity_criterion(0.5, {"mean_map": mean_map})(model, (x, y))
    assert logs["mean_map"] == pytest.approx(2.0 * model.forward_all(x)[2].mean().item(), rel=1e-5)
    assert float(total.detach()) == pytest.approx(float(plain.detach()) + logs["mean_map"], rel=1e-5)
    assert seen["weight"] == model.head.weight.shape and torch.equal(seen["labels"], y)
    with pytest.raises(TypeError, match="callable"):
        diversity_criterion(0.5, {"bad": 1.0})
    with pytest.raises(ValueError, match="scalar"):
        diversity_criterion(0.5, {"vector": lambda m, lg, w, t: m.mean(dim=(1, 2, 3))})(model, (x, y))


def test_shape_errors():
    with pytest.raises(ValueError, match="shapes do not fit"):
        feature_diversity_loss(torch.rand(2, 3, 4, 4), torch.rand(2, 5), torch.rand(5, 4))
    with pytest.raises(ValueError, match="B, n_f, h, w"):
        feature_diversity_loss(torch.rand(2, 3, 4), torch.rand(2, 5), torch.rand(5, 3))
