"""A reader's own images with instance masks, in the shape of the COCO subset.

``root/images/<name>.<jpg|png|…>`` and ``root/masks/<name>.png``: one mask per image, of the
image's size, 0 for the background and one value (grey level or palette index) per instance; a
black-and-white mask is one instance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .coco import CocoInstances

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def mask_folder_instances(root: str | os.PathLike, *, min_area: float = 10) -> CocoInstances:
    """Every instance of at least ``min_area`` px² in the masks under ``root`` (see the module)."""
    from PIL import Image

    root = Path(root).expanduser()
    image_dir, mask_dir = root / "images", root / "masks"
    if not (image_dir.is_dir() and mask_dir.is_dir()):
        raise FileNotFoundError(f"{root} needs two folders, images/ and masks/ (one PNG mask per "
                                "image, of the same name).")
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    images, masks, index, names = [], [], [], []
    for path in files:
        mask_path = mask_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{path.name} has no mask: expected {mask_path}.")
        image = np.asarray(Image.open(path).convert("RGB"))
        ids = np.asarray(Image.open(mask_path))
        if ids.ndim == 3:  # an RGB(A) mask: its first channel holds the values
            ids = ids[..., 0]
        if ids.shape != image.shape[:2]:
            raise ValueError(f"{mask_path.name} is {ids.shape[1]}×{ids.shape[0]} but its image is "
                             f"{image.shape[1]}×{image.shape[0]} (width × height): give each mask "
                             "at its image's size.")
        kept = [(v, ids == v) for v in np.unique(ids) if v != 0 and (ids == v).sum() >= min_area]
        if not kept:
            continue
        images.append(image)
        for value, mask in kept:
            masks.append(mask)
            index.append(len(images) - 1)
            names.append(f"{path.stem}:{int(value)}")
    if not masks:
        raise ValueError(f"The masks under {mask_dir} hold no instance of at least {min_area} "
                         "px²: the background is 0, each instance another value.")
    return CocoInstances(images, masks, index, names)
