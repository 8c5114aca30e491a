"""The one data entry point of the classification chapters: splits, class names and ground truth."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..runtime import get_profile
from .base import check_labels

__all__ = ["ClassificationData", "load_data"]

# the concept-parts sizes of each profile (the full world without downloads: a larger set)
CONCEPT_SIZES = {"smoke": dict(n_train=2000, n_test=1000, n_classes=10, image_size=64),
                 "full": dict(n_train=20_000, n_test=5000, n_classes=50, image_size=128)}


@dataclass(frozen=True)
class ClassificationData:
    """Train (augmented), eval-train and test splits, class names and what ground truth exists.

    ``name`` identifies the data (with its options) for the dense model's cache. The ground
    truth is None where the data has none: ``class_attributes`` (C × A class–concept matrix),
    ``part_map`` (test images' part maps, 0 = background), ``class_parts`` (C × P),
    ``superclass`` (C,) and ``linkage`` (the class hierarchy, SciPy linkage).
    """

    name: str
    train: Dataset
    eval_train: Dataset
    test: Dataset
    class_names: tuple[str, ...]
    train_labels: Tensor
    test_labels: Tensor
    class_attributes: Tensor | None = None
    part_map: Tensor | None = None
    n_parts: int | None = None
    class_parts: Tensor | None = None
    superclass: Tensor | None = None
    linkage: np.ndarray | None = None
    test_images: Tensor | None = field(default=None, repr=False)  # in [0, 1], when in memory
    synthetic_test: Any = field(default=None, repr=False)  # the ConceptParts test split

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def real_images(self) -> bool:
        """Whether the images are files (ImageNet-normalised) rather than synthetic tensors."""
        return self.test_images is None

    def images(self, indices: Sequence[int] | Tensor) -> Tensor:
        """Test images ``indices`` in [0, 1] for display, (n, 3, H, W)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.test_images is not None:
            return self.test_images[idx]
        from ..data.transforms import display_images

        return display_images(self.test, idx.tolist())

    def ground_truth(self) -> dict[str, Any]:
        """The keyword arguments of :func:`companion.classify.evaluate` this data can fill."""
        return dict(class_attributes=self.class_attributes, part_map=self.part_map,
                    n_parts=self.n_parts, class_parts=self.class_parts)

    def __str__(self) -> str:
        return (f"{self.n_classes} classes, {len(self.train)} training and {len(self.test)} "
                "test images")


def _name(kind: str, options: dict) -> str:
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    return f"{kind}-{digest}"


def _concept_parts(seed: int, **options: Any) -> ClassificationData:
    import inspect

    from ..data.concept_parts import make_concept_parts

    known = set(CONCEPT_SIZES["smoke"]) | (set(inspect.signature(make_concept_parts).parameters)
                                           - {"n_images", "split", "seed"})
    if unknown := sorted(set(options) - known):
        raise TypeError(f"{unknown} are not concept-parts options; load_data passes these to "
                        f"make_concept_parts: {sorted(known)}.")
    sizes = {**CONCEPT_SIZES[get_profile().name], **options}
    n_train, n_test = sizes.pop("n_train"), sizes.pop("n_test")
    train = make_concept_parts(n_train, split="train", seed=seed, **sizes)
    test = make_concept_parts(n_test, split="test", seed=seed, **sizes)
    return ClassificationData(
        name=_name("concept_parts", {"n_train": n_train, "n_test": n_test, "seed": seed, **sizes}),
        train=train.dataset(), eval_train=train.dataset(), test=test.dataset(),
        class_names=tuple(train.class_names), train_labels=train.labels, test_labels=test.labels,
        class_attributes=train.class_parts.float(), part_map=test.part_map, n_parts=test.n_parts,
        class_parts=test.class_parts, superclass=train.superclass, linkage=train.linkage(),
        test_images=test.images, synthetic_test=test)


def _cub(root: str | os.PathLike | None, image_size: int, trivial_augment: bool,
         download: bool) -> ClassificationData:
    from ..data.cub import cub_splits

    cub = cub_splits(root, image_size=image_size, trivial_augment=trivial_augment,
                     download=download)
    attributes = torch.as_tensor(cub.train.class_attribute_matrix(), dtype=torch.float32)
    return ClassificationData(
        name=_name("cub", {"image_size": image_size, "trivial_augment": trivial_augment,
                           "n_train": len(cub.train), "n_test": len(cub.test)}),
        train=cub.train, eval_train=cub.eval_train, test=cub.test,
        class_names=tuple(cub.classes), train_labels=torch.as_tensor(cub.train.targets),
        test_labels=torch.as_tensor(cub.test.targets), class_attributes=attributes)


def _image_folder(root: str | os.PathLike, image_size: int, trivial_augment: bool,
                  test_fraction: float, seed: int) -> ClassificationData:
    from ..data.image_folder import image_folder_splits

    folder = image_folder_splits(root, image_size=image_size, test_fraction=test_fraction,
                                 seed=seed, trivial_augment=trivial_augment)
    identity = {"root": str(Path(root).expanduser().resolve()), "classes": folder.classes,
                "n_train": len(folder.train), "n_test": len(folder.test), "split": folder.split,
                "image_size": image_size, "trivial_augment": trivial_augment}
    return ClassificationData(
        name=_name("folder", identity), train=folder.train, eval_train=folder.eval_train,
        test=folder.test, class_names=tuple(folder.classes),
        train_labels=torch.as_tensor(folder.train_targets),
        test_labels=torch.as_tensor(folder.test_targets))


def load_data(source: str | os.PathLike = "concept_parts", *, root: str | os.PathLike | None = None,
              image_size: int = 224, trivial_augment: bool = True, test_fraction: float = 0.2,
              seed: int = 0, download: bool = True, **concept_options: Any) -> ClassificationData:
    """``"concept_parts"`` (synthetic, sizes from the profile), ``"cub"`` or an image folder.

    ``root`` is CUB's folder (None: the cache); an image folder is named by ``source`` itself
    (``root/train`` + ``root/test``, else a seeded, class-stratified ``test_fraction``).
    ``concept_options`` (n_train, n_test, n_classes, image_size …) override the profile's
    concept-parts sizes; any other option of :func:`companion.data.concept_parts.make_concept_parts`
    (``rotation``, ``distractors``, ``shortcut`` …) goes to the generator. The labels are
    validated here, once for the pipeline.
    """
    if str(source) == "concept_parts":
        data = _concept_parts(seed, **concept_options)
    elif concept_options:
        raise TypeError(f"{sorted(concept_options)} only apply to source='concept_parts'.")
    elif str(source) == "cub":
        data = _cub(root, image_size, trivial_augment, download)
    else:
        data = _image_folder(source, image_size, trivial_augment, test_fraction, seed)
    check_labels(data.train_labels, data.n_classes)
    if len(data.test_labels) and (int(data.test_labels.min()) < 0
                                  or int(data.test_labels.max()) >= data.n_classes):
        raise ValueError(f"test labels must lie in [0, {data.n_classes}).")
    return data
