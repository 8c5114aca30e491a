"""Tests of the backbones (small CNN, timm ResNet and ViT) and the pooled classifier."""

import pytest
import torch
from torch import nn

import companion
from companion.models import Backbone, Classifier, create_backbone


@pytest.fixture(autouse=True)
def smoke_profile():
    companion.set_profile("smoke")


def test_small_cnn_shapes_and_relu_maps():
    backbone = create_backbone("small_cnn", width=64)
    maps = backbone.forward_features(torch.randn(2, 3, 64, 64))
    assert isinstance(backbone, Backbone) and backbone.num_features == 64
    assert maps.shape == (2, 64, 8, 8)
    assert maps.min() >= 0 and (maps == 0).any() and (maps > 0).any()
    grey = create_backbone("small_cnn", width=16, in_chans=1)
    assert grey.forward_features(torch.randn(3, 1, 32, 32)).shape == (3, 16, 4, 4)


def test_resnet_maps_and_reduced_strides():
    x = torch.randn(1, 3, 64, 32)
    normal = create_backbone("timm:resnet18")
    reduced = create_backbone("timm:resnet18", reduced_strides=True)
    assert normal.num_features == reduced.num_features == 512
    assert normal.forward_features(x).shape == (1, 512, 2, 1)
    maps = reduced.forward_features(x)
    assert maps.shape == (1, 512, 8, 4)  # layer3 and layer4 no longer halve the size
    assert maps.min() >= 0
    avg_down = create_backbone("timm:resnet10t", reduced_strides=True)  # shortcut with avg pooling
    assert avg_down.forward_features(x).shape == (1, 512, 8, 4)
    with pytest.raises(ValueError, match="layer3"):
        create_backbone("timm:vit_tiny_patch16_224", reduced_strides=True, img_size=32)


def test_vit_tokens_become_a_grid():
    vit = create_backbone("timm:vit_small_patch14_reg4_dinov2", depth=2, dynamic_img_size=True,
                          relu=False)
    x = torch.randn(2, 3, 28, 42)
    maps = vit.forward_features(x)
    assert maps.shape == (2, 384, 2, 3)
    tokens = vit.model.forward_features(x)
    prefix = vit.model.num_prefix_tokens
    assert prefix == 5  # class token and four registers are not patches
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(maps[:, :, i, j], tokens[:, prefix + 3 * i + j])
    vit.relu = True
    assert torch.equal(vit.forward_features(x), maps.clamp(min=0))


def test_vit_with_fixed_size_explains_the_size():
    vit = create_backbone("timm:vit_tiny_patch16_224", img_size=32, depth=1)
    assert vit.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 192, 2, 2)
    with pytest.raises(ValueError, match="img_size"):
        vit.forward_features(torch.randn(1, 3, 48, 48))


def test_classifier_pools_the_maps_and_head_is_replaceable():
    torch.manual_seed(0)
    model = Classifier(create_backbone("small_cnn", width=16), num_classes=4, dropout=0.3).eval()
    x = torch.rand(5, 3, 32, 32)
    logits, pooled, maps = model.forward_all(x)
    assert logits.shape == (5, 4) and pooled.shape == (5, 16) and maps.shape == (5, 16, 4, 4)
    torch.testing.assert_close(pooled, maps.mean(dim=(2, 3)))
    torch.testing.assert_close(model(x), model.head(pooled))

    weight = torch.randint(0, 2, (7, 16)).float()  # a binary assignment, as in QPM
    model.head = nn.Linear(16, 7, bias=False).requires_grad_(False)
    model.head.weight.copy_(weight)
    torch.testing.assert_close(model(x), pooled @ weight.T)


@pytest.mark.parametrize("bad, error, match", [
    (torch.rand(3, 16, 16), ValueError, r"\(B, C, H, W\).*unsqueeze"),
    (torch.rand(2, 1, 16, 16), ValueError, "channels"),
    (torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8), TypeError, "float"),
    ([[1.0]], TypeError, "tensor"),
])
def test_bad_input_is_explained(bad, error, match):
    for name in ("small_cnn", "timm:resnet18"):
        with pytest.raises(error, match=match):
            create_backbone(name).forward_features(bad)


def test_factory_errors_and_offline_weights(tmp_path):
    with pytest.raises(ValueError, match="small_cnn"):
        create_backbone("resnet50")
    with pytest.raises(ValueError, match="timm has no model"):
        create_backbone("timm:no_such_net")
    with pytest.raises(RuntimeError, match="never downloads"):
        create_backbone("timm:resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError):
        create_backbone("timm:resnet18", pretrained_file=tmp_path / "missing.pth")
    source = create_backbone("timm:resnet18")
    torch.save(source.model.state_dict(), tmp_path / "r18.pth")
    loaded = create_backbone("timm:resnet18", pretrained_file=tmp_path / "r18.pth")
    for key, value in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
