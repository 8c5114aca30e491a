"""The normalisation rule of pretrained backbones: read from the model's own pretrained config."""

import pytest
from timm.models.vision_transformer import VisionTransformer

from companion.models.normalization import pretrained_normalization


def _vit():
    return VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                             num_classes=0)


def test_the_models_own_statistics_win():
    vit = _vit()
    vit.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 1.0)}  # e.g. a CLIP-like cfg
    assert pretrained_normalization(vit) == ((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))


def test_a_model_without_a_config_gets_imagenet_statistics():
    mean, std = pretrained_normalization(_vit())
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and std == pytest.approx((0.229, 0.224, 0.225))


def test_a_config_that_cannot_normalise_rgb_is_refused():
    vit = _vit()
    vit.pretrained_cfg = {"mean": (0.5,), "std": (0.5,)}
    with pytest.raises(ValueError, match="three channels"):
        pretrained_normalization(vit)
