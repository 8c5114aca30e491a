"""The COCO val2017 subset reader of the USAM full world, on a tiny fixture in the real format."""

import json

import numpy as np
import pytest
from PIL import Image

from companion.data.coco import coco_instances


def _rect(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture()
def tiny_coco(tmp_path):
    """Three images; crowds, small objects and an image with nothing left must be dropped."""
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in range(1, 4):
        name = f"{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            tmp_path / "val2017" / name)
        images.append({"id": i, "file_name": name, "height": 48, "width": 64})
    anns = [  # id, image, category, rectangle, crowd
        (1, 1, 1, (2, 2, 42, 32), 0),    # area 1200: kept
        (2, 1, 2, (30, 10, 62, 46), 0),  # area 1152: kept
        (3, 1, 1, (0, 0, 10, 10), 0),    # area 100: too small
        (4, 2, 2, (0, 0, 60, 40), 1),    # crowd: dropped
        (5, 3, 2, (10, 5, 60, 45), 0),   # area 2000: kept
    ]
    annotations = []
    for aid, img, cat, (x0, y0, x1, y1), crowd in anns:
        annotations.append({"id": aid, "image_id": img, "category_id": cat, "iscrowd": crowd,
                            "segmentation": _rect(x0, y0, x1, y1),
                            "area": float((x1 - x0) * (y1 - y0)),
                            "bbox": [x0, y0, x1 - x0, y1 - y0]})
    categories = [{"id": 1, "name": "cat", "supercategory": "animal"},
                  {"id": 2, "name": "dog", "supercategory": "animal"}]
    with open(tmp_path / "annotations" / "instances_val2017.json", "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return tmp_path


def test_reads_instances_and_drops_crowds_small_and_empty(tiny_coco):
    data = coco_instances(tiny_coco, max_images=10, min_area=1000, progress=False)
    assert len(data.images) == 2  # image 2 holds only a crowd
    assert len(data.masks) == len(data.image_index) == len(data.categories) == 3
    assert sorted(data.categories) == ["cat", "dog", "dog"]
    for mask, i in zip(data.masks, data.image_index, strict=True):
        assert mask.dtype == bool and mask.shape == data.images[i].shape[:2]
    areas = sorted(int(m.sum()) for m in data.masks)
    # rasterised rectangles cover about their polygon area (boundary pixels included)
    for area, expected in zip(areas, [1152, 1200, 2000], strict=True):
        assert expected <= area <= expected * 1.15
    assert all(img.dtype == np.uint8 and img.shape == (48, 64, 3) for img in data.images)


def test_by_default_small_instances_from_10_px2_are_kept_as_in_the_paper(tiny_coco):
    """UncertainSAM's protocol keeps every instance of at least 10 px² (the 100 px² one here)."""
    data = coco_instances(tiny_coco, max_images=10, progress=False)
    assert len(data.masks) == 4
    assert 100 <= min(int(m.sum()) for m in data.masks) <= 100 * 1.25


def test_subset_size_and_seed(tiny_coco):
    chosen = [coco_instances(tiny_coco, max_images=2, min_area=0, seed=s, progress=False)
              for s in (0, 0, 1)]
    assert all(len(c.images) <= 2 for c in chosen)  # images are drawn first, then filtered
    assert len(chosen[0].masks) == len(chosen[1].masks)
    assert all(np.array_equal(a, b) for a, b in zip(chosen[0].images, chosen[1].images, strict=True))


def test_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_data=True"):
        coco_instances(tmp_path / "nowhere", progress=False)
