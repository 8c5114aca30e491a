"""The faster transforms give torchvision's tensors bit for bit and draw the same random numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from companion.data import fast_transforms as fast_tf
from companion.data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_transforms


def _images(n: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (29 + k % 7, 33 + k % 5, 3), dtype=np.uint8))
            for k in range(n)]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.stride() == b.stride() and torch.equal(a, b)


def test_to_normalized_tensor_matches_to_tensor_then_normalize():
    fast = fast_tf.ToNormalizedTensor(IMAGENET_MEAN, IMAGENET_STD)
    slow = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    for image in _images():
        assert _same(fast(image), slow(image))


@pytest.mark.parametrize("kind", ["grey", "array"])
def test_to_normalized_tensor_falls_back_for_other_inputs(kind):
    pixels = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    pic = Image.fromarray(pixels[..., 0]) if kind == "grey" else pixels
    mean, std = ((0.5,), (0.25,)) if kind == "grey" else (IMAGENET_MEAN, IMAGENET_STD)
    slow = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    assert _same(fast_tf.ToNormalizedTensor(mean, std)(pic), slow(pic))


def test_to_normalized_tensor_rejects_zero_std():
    with pytest.raises(ValueError, match="std must not contain zeros"):
        fast_tf.ToNormalizedTensor((0.5,), (0.0,))


def test_cached_trivial_augment_draws_as_torchvision():
    fast, slow = fast_tf.CachedTrivialAugmentWide(), T.TrivialAugmentWide()
    for k, image in enumerate(_images(200)):
        torch.manual_seed(k)
        a = np.asarray(fast(image))
        torch.manual_seed(k)
        b = np.asarray(slow(image))
        assert np.array_equal(a, b)
    assert len(fast._spaces) == 1


@pytest.mark.parametrize("hue", [0.0, 0.1])
def test_fast_color_jitter_draws_as_torchvision(hue):
    options = dict(brightness=0.3, contrast=0.3, saturation=0.3, hue=hue)
    fast, slow = fast_tf.FastColorJitter(**options), T.ColorJitter(**options)
    for k, image in enumerate(_images(100)):
        torch.manual_seed(k)
        a = np.asarray(fast(image))
        torch.manual_seed(k)
        assert np.array_equal(a, np.asarray(slow(image)))
    x = torch.rand(3, 16, 16)
    torch.manual_seed(0)
    a = fast(x)
    torch.manual_seed(0)
    assert torch.equal(a, slow(x))


def test_image_transforms_match_torchvision_pipeline():
    augmented, plain = image_transforms(24, trivial_augment=True)
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    slow_augmented = T.Compose([T.Resize(27), T.RandomCrop(24), T.RandomHorizontalFlip(),
                                T.ColorJitter(0.1, 0.1, 0.1), T.TrivialAugmentWide(),
                                T.ToTensor(), norm])
    slow_plain = T.Compose([T.Resize(27), T.CenterCrop(24), T.ToTensor(), norm])
    for k, image in enumerate(_images()):
        for fast, slow in [(augmented, slow_augmented), (plain, slow_plain)]:
            torch.manual_seed(k)
            a = fast(image)
            torch.manual_seed(k)
            assert _same(a, slow(image))
