"""A reader's own images as a classification dataset: one folder per class (torchvision ImageFolder).

Either ``root/train/<class>/…`` and ``root/test/<class>/…`` (the test split by folder), or
``root/<class>/…`` split into train and test by a seeded, class-stratified fraction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from .transforms import image_transforms

__all__ = ["ImageFolderSplits", "image_folder_splits", "stratified_split"]


@dataclass(frozen=True)
class ImageFolderSplits:
    """Augmented train, plain train and plain test views of an image folder, with class names."""

    train: Dataset
    eval_train: Dataset
    test: Dataset
    classes: list[str]
    train_targets: list[int]
    test_targets: list[int]
    split: str  # "folders" or "fraction=<f>,seed=<s>"

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def stratified_split(targets, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: about ``test_fraction`` of every class in test (seeded).

    Every class keeps at least one training image; a class with one image has none in test.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    y = np.asarray(targets)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        test.extend(members[:n_test].tolist())
    test = np.sort(np.array(test, dtype=int))
    return np.setdiff1d(np.arange(len(y)), test), test


def _image_folder(root: Path, transform) -> Dataset:
    """torchvision's ImageFolder of ``root`` (files without an image extension are skipped)."""
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(root, transform=transform)
    except FileNotFoundError as err:  # a class folder without images, or no class folder at all
        raise ValueError(f"{root}: {err} Put at least two images in every class folder, or remove "
                         "the empty ones.") from err
    if len(folder.classes) < 2:
        raise ValueError(f"{root} holds {len(folder.classes)} class folder(s) "
                         f"({folder.classes}); a classifier needs at least two, one sub-folder of "
                         "images per class.")
    return folder


def image_folder_splits(root: str | os.PathLike, *, image_size: int = 224,
                        test_fraction: float = 0.2, seed: int = 0,
                        trivial_augment: bool = False) -> ImageFolderSplits:
    """The reader's images under ``root`` as train / eval-train / test, ImageNet-normalised.

    Images of any size and mode (grey, RGBA, palette) are converted to RGB and cropped to
    ``image_size``; files without an image extension are skipped.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} not found: pass a folder holding one "
                                "sub-folder of images per class (or train/ and test/ with those).")
    augmented, plain = image_transforms(image_size, trivial_augment=trivial_augment)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _image_folder(root / "train", augmented)
        test = _image_folder(root / "test", plain)
        if test.classes != train.classes:
            raise ValueError(f"{root}/train and {root}/test must hold the same class folders; got "
                             f"{train.classes} and {test.classes}.")
        return ImageFolderSplits(train, _image_folder(root / "train", plain), test,
                                 list(train.classes), list(train.targets), list(test.targets),
                                 "folders")
    every = _image_folder(root, augmented)
    tr, te = stratified_split(every.targets, test_fraction, seed)
    if len(te) == 0:
        raise ValueError(f"{root} has too few images per class for a test split; put at least "
                         "two images in each class folder.")
    targets = np.asarray(every.targets)
    return ImageFolderSplits(
        Subset(every, tr.tolist()), Subset(_image_folder(root, plain), tr.tolist()),
        Subset(_image_folder(root, plain), te.tolist()), list(every.classes),
        targets[tr].tolist(), targets[te].tolist(), f"fraction={test_fraction},seed={seed}")
