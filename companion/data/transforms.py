"""Image transforms of the classification data: ImageNet-normalised crops, undone for display."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "display_images", "image_transforms", "resize_size"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def resize_size(image_size: int = 224, resize: int | None = None) -> int:
    """The shorter side the images are resized to before the crop: ``image_size * 8 / 7`` by default."""
    return round(int(image_size) * 8 / 7) if resize is None else int(resize)


def image_transforms(image_size: int = 224, resize: int | None = None,
                     trivial_augment: bool = False) -> tuple[Callable, Callable]:
    """``(augmented, plain)`` ImageNet-normalised transforms: random or centre crop after a resize.

    ``resize`` (the shorter side before cropping) defaults to ``image_size * 8 / 7`` (256 for 224).
    ``trivial_augment`` adds TrivialAugmentWide, as SLDD trains. ColorJitter, TrivialAugmentWide
    and ToTensor + Normalize are the faster equivalents of :mod:`companion.data.fast_transforms`.
    """
    from torchvision import transforms as T

    from .fast_transforms import CachedTrivialAugmentWide, FastColorJitter, ToNormalizedTensor

    if int(image_size) < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
    resize = resize_size(image_size, resize)
    if resize < int(image_size):
        raise ValueError(f"resize ({resize}) must be at least image_size ({image_size}): the crop "
                         "is taken from the resized image.")
    to_tensor = ToNormalizedTensor(IMAGENET_MEAN, IMAGENET_STD)
    augment = [T.Resize(resize), T.RandomCrop(image_size), T.RandomHorizontalFlip(),
               FastColorJitter(0.1, 0.1, 0.1)]
    if trivial_augment:
        augment.append(CachedTrivialAugmentWide())
    plain = T.Compose([T.Resize(resize), T.CenterCrop(image_size), to_tensor])
    return T.Compose([*augment, to_tensor]), plain


def display_images(dataset: Dataset, indices: Sequence[int]) -> torch.Tensor:
    """The images ``dataset[i]`` (ImageNet-normalised tensors) back in [0, 1] for display (n, 3, H, W)."""
    images = torch.stack([dataset[int(i)][0] for i in indices])
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (images * std + mean).clamp(0, 1)
