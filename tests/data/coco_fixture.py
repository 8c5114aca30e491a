"""COCO val2017 at its real instance statistics, written in code in the real on-disk format.

``annotations/instances_val2017.json`` (polygon segmentations, crowds as uncompressed RLE,
COCO's 80 category ids with their gaps) and ``val2017/<12-digit id>.jpg``. The images are small,
but the annotations follow COCO val's statistics: about 7.3 instances per image, a long tail to
more than 50, about 1 % of images without any; about 41 % of the instances small (under 32² px),
a few under the paper's 10 px², and about 1 % crowds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REAL_N_IMAGES = 300     # the chapter's COCO subset
MEAN_INSTANCES = 7.3    # COCO val2017: 36,781 annotations on 5,000 images
MAX_INSTANCES = 63      # COCO val2017's most crowded image
TINY_AREA = 10          # the paper drops instances under 10 px²
# COCO's 80 category ids: 1 … 90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83
CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def instance_counts(n_images: int, rng: np.random.Generator) -> np.ndarray:
    """Instances per image: one plus a negative binomial, of mean 7.3 together (a long tail), one
    image with 50+, about 1 % empty, at most 63."""
    extra = MEAN_INSTANCES - 1
    counts = np.minimum(1 + rng.negative_binomial(1.5, 1.5 / (1.5 + extra), n_images),
                        MAX_INSTANCES)
    counts[rng.random(n_images) < 0.01] = 0
    counts[int(counts.argmax())] = max(int(counts.max()), 52)
    return counts


def _instance_area(rng: np.random.Generator, image_area: int) -> float:
    """An area in px²: small (< 32²) 41 %, medium 34 %, large 25 %; 2 % of the small under 10."""
    kind = rng.choice(3, p=[0.41, 0.34, 0.25])
    if kind == 0:
        return rng.uniform(3, 9) if rng.random() < 0.02 else rng.uniform(10, 32 ** 2)
    if kind == 1:
        return rng.uniform(32 ** 2, min(96 ** 2, image_area / 4))
    return rng.uniform(min(96 ** 2, image_area / 4), image_area / 2)


def _polygon(rng: np.random.Generator, area: float, h: int, w: int) -> np.ndarray:
    """A star-shaped polygon of about ``area`` px² inside the image, as (n, 2) (x, y)."""
    n = int(rng.integers(5, 14))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.7, 1.0, n)
    # area of the polygon with unit scale, to scale it to the wanted area
    xy = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    unit = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1)))
    scale = min(np.sqrt(area / unit), (min(h, w) - 2) / 2)
    centre = rng.uniform([scale, scale], [w - scale, h - scale])
    return np.clip(centre + scale * xy, 0, [w - 1, h - 1])


def _rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major run lengths, starting with a background run)."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes]))
    return {"counts": [int(c) for c in counts], "size": list(mask.shape)}


def write_real_shapes_coco(root: Path, n_images: int = REAL_N_IMAGES, size: tuple[int, int] = (120, 160),
                           seed: int = 0) -> Path:
    """COCO val2017 under ``root`` with ``n_images`` images of ``size`` (height, width) and
    COCO's instance statistics; each instance is a polygon of its own colour. Returns ``root``."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    h, w = size
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for n in instance_counts(n_images, rng):
        image_id = int(rng.integers(1, 600_000))
        while any(i["id"] == image_id for i in images):
            image_id = int(rng.integers(1, 600_000))
        name = f"{image_id:012d}.jpg"
        pixels = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        for _ in range(n):
            crowd = int(rng.random() < 0.01)
            poly = _polygon(rng, _instance_area(rng, h * w), h, w)
            segmentation = [[round(float(v), 2) for v in poly.ravel()]]
            rle = mask_utils.frPyObjects(segmentation, h, w)
            mask = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            pixels[mask] = rng.integers(90, 256, 3)
            if crowd:
                segmentation = _rle(mask)
            area = float(mask_utils.area(mask_utils.merge(rle)))
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(rng.choice(CATEGORY_IDS)), "iscrowd": crowd,
                                "segmentation": segmentation, "area": area,
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
        Image.fromarray(pixels).save(root / "val2017" / name, quality=90)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
    categories = [{"id": c, "name": f"category-{c}", "supercategory": "thing"}
                  for c in CATEGORY_IDS]
    with open(root / "annotations" / "instances_val2017.json", "w") as f:
        json.dump({"info": {"description": "COCO-shaped fixture"}, "images": images,
                   "annotations": annotations, "categories": categories}, f)
    return root
