"""COCO val2017 instances: a random subset of images with one binary mask per instance."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..download import download, extract
from ..runtime import cache_dir

COCO_FILES = {  # (url, md5)
    "val2017": ("http://images.cocodataset.org/zips/val2017.zip",
                "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations": ("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                    "f4bbac642086de4f52a3fdda2de5fa2c"),
}


@dataclass(frozen=True)
class CocoInstances:
    """A COCO subset: images (HWC uint8) and one instance mask per entry of ``image_index``."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    image_index: list[int]
    categories: list[str]


def coco_instances(root: str | os.PathLike | None = None, *, max_images: int = 100,
                   min_area: float = 10, download_data: bool = False, seed: int = 0,
                   progress: bool = True) -> CocoInstances:
    """Instances of ``max_images`` random COCO val2017 images (crowds and areas < ``min_area`` out).

    ``min_area`` (in px²) is 10 by default, the UncertainSAM paper's protocol (instances under
    10 px² are dropped).
    """
    from PIL import Image
    from pycocotools.coco import COCO

    root = Path(root) if root is not None else cache_dir("coco")
    ann_file = root / "annotations" / "instances_val2017.json"
    image_dir = root / "val2017"
    if not (ann_file.is_file() and image_dir.is_dir()):
        if not download_data:
            raise FileNotFoundError(f"COCO val2017 not found or corrupted under {root}. You can use "
                                    "download_data=True to download it (about 1 GB).")
        for key, (url, md5) in COCO_FILES.items():
            archive = download(url, None, md5=md5, folder=root / "downloads", progress=progress)
            extract(archive, root / ("val2017.extracted" if key == "val2017" else "annotations.extracted"))
        os.replace(root / "val2017.extracted" / "val2017", image_dir)
        (root / "annotations").mkdir(exist_ok=True)
        os.replace(root / "annotations.extracted" / "annotations" / "instances_val2017.json",
                   ann_file)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its loading times
        coco = COCO(str(ann_file))
    rng = np.random.default_rng(seed)
    ids = sorted(coco.getImgIds())
    chosen = rng.choice(ids, size=min(max_images, len(ids)), replace=False)
    images, masks, index, cats = [], [], [], []
    for img_id in tqdm(chosen, desc="COCO", disable=not progress):
        info = coco.loadImgs(int(img_id))[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=int(img_id), iscrowd=False))
                if a["area"] >= min_area]
        if not anns:
            continue
        images.append(np.asarray(Image.open(image_dir / info["file_name"]).convert("RGB")))
        for a in anns:
            masks.append(coco.annToMask(a).astype(bool))
            index.append(len(images) - 1)
            cats.append(coco.loadCats(a["category_id"])[0]["name"])
    return CocoInstances(images, masks, index, cats)
