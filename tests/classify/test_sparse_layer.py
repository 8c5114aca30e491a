"""SparseLayer: the formula, what is frozen and what trains, fine-tuning under it, bad input."""

import pytest
import torch

from companion.classify import finetune
from companion.classify.sparse import SparseLayer
from companion.models import Classifier, create_backbone


def make_layer(trainable_norm=True, relu=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    selection = torch.tensor([5, 0, 3])
    weight = torch.tensor([[1.0, 0.0, -2.0], [0.0, 0.5, 0.0]])
    mean, std = torch.randn(3, generator=gen), torch.rand(3, generator=gen) + 0.5
    return SparseLayer(selection, weight, mean, std, torch.tensor([0.1, -0.3]),
                       trainable_norm=trainable_norm, relu=relu)


def test_forward_is_the_normalised_affine_map():
    layer = make_layer()
    f = torch.randn(4, 7)
    z = (f[:, [5, 0, 3]] - layer.mean) / layer.std
    expected = z @ layer.weight.T + layer.bias
    assert torch.allclose(layer(f), expected)
    assert torch.allclose(make_layer(relu=True).normalize(f), z.clamp_min(0), atol=1e-6)
    dense = layer.dense_weight(7)
    assert torch.equal(dense[:, [5, 0, 3]], layer.weight) and dense[:, [1, 2, 4, 6]].eq(0).all()
    assert layer.per_class == 1.5 and layer.features_used == 3


def test_weight_is_frozen_and_normalisation_trainable_only_when_asked():
    layer = make_layer()
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"mean", "std"}
    assert {"weight", "bias", "selection"} <= {n for n, _ in layer.named_buffers()}
    frozen = make_layer(trainable_norm=False)
    assert list(frozen.parameters()) == []
    # a state dict round trip restores everything
    other = make_layer(seed=1)
    other.load_state_dict(layer.state_dict())
    f = torch.randn(3, 7)
    assert torch.allclose(other(f), layer(f))


def test_finetune_trains_backbone_and_norm_but_not_the_assignment():
    torch.manual_seed(0)
    model = Classifier(create_backbone("small_cnn", width=8), num_classes=2)
    layer = SparseLayer(torch.tensor([1, 4, 6]), torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]),
                        torch.zeros(3), torch.ones(3))
    w0, b0 = layer.weight.clone(), layer.bias.clone()
    conv0 = model.backbone.blocks[0][0].weight.detach().clone()
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 2
    history = finetune(model, layer, (x, y), epochs=1, lr=0.05, batch_size=8, device="cpu", progress=False)
    assert model.head is layer and model.dropout.p == pytest.approx(0.1)
    assert torch.equal(layer.weight, w0) and torch.equal(layer.bias, b0)
    assert not torch.equal(model.backbone.blocks[0][0].weight, conv0)
    assert not torch.equal(layer.mean.detach(), torch.zeros(3))
    assert {"ce", "diversity", "accuracy"} <= set(history.train_metrics)


def test_bad_input_is_rejected():
    w, m, s = torch.ones(2, 3), torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="distinct"):
        SparseLayer(torch.tensor([0, 0, 1]), w, m, s)
    with pytest.raises(ValueError, match=r"shape \(n_classes, 2\)"):
        SparseLayer(torch.tensor([0, 1]), w, m[:2], s[:2])
    with pytest.raises(ValueError, match="mean and std"):
        SparseLayer(torch.tensor([0, 1, 2]), w, m[:2], s)
    with pytest.raises(ValueError, match="finite"):
        SparseLayer(torch.tensor([0, 1, 2]), w * float("nan"), m, s)
    layer = SparseLayer(torch.tensor([0, 1, 5]), w, m, s)
    with pytest.raises(ValueError, match="D >"):
        layer(torch.randn(2, 4))
    model = Classifier(create_backbone("small_cnn", width=4), num_classes=2)
    with pytest.raises(ValueError, match="only 4 features"):
        finetune(model, layer, (torch.rand(2, 3, 32, 32), torch.tensor([0, 1])), epochs=1, device="cpu")
