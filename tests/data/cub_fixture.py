"""A tiny CUB-200-2011 in the real on-disk format, written in code for the loader's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

N_PARTS, N_ATTRIBUTES = 15, 312
CLASS_FOLDERS = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
WIDTH, HEIGHT = 32, 24


@dataclass(frozen=True)
class TinyCUB:
    """What was written: per image id (1-based) its truth, to compare the loader against."""

    root: Path
    paths: dict[int, str]
    labels: dict[int, int]          # 1-based, as on disk
    is_train: dict[int, int]
    colour: dict[int, tuple[int, int, int]]
    bbox: dict[int, tuple[float, float, float, float]]
    parts: dict[int, np.ndarray]    # (15, 3): x, y, visible
    attributes: dict[int, np.ndarray]  # (312, 2): is_present, certainty


def write_tiny_cub(root: Path, per_class: int = 4) -> TinyCUB:
    """Write 3 classes x ``per_class`` JPEGs of 32x24 with every annotation file and a mask each."""
    folder = root / "CUB_200_2011"
    rng = np.random.default_rng(0)
    paths, labels, is_train, colour, bbox, parts, attributes = {}, {}, {}, {}, {}, {}, {}
    image_id = 0
    for rank in range(per_class):  # ids interleave the classes, as the real ones do not
        for label, class_folder in enumerate(CLASS_FOLDERS, 1):
            image_id += 1
            name = f"{class_folder.split('.')[1]}_{image_id:04d}_{100 + image_id}.jpg"
            paths[image_id] = f"{class_folder}/{name}"
            labels[image_id] = label
            is_train[image_id] = int(rank % 2 == 0)
            colour[image_id] = (20 * image_id % 256, 80 * label, 200 - 10 * rank)
            x, y = 2.0 + image_id % 5, 1.5 + image_id % 4
            bbox[image_id] = (x, y, 16.0 + image_id % 3, 12.0)
            visible = rng.random(N_PARTS) < 0.7
            xy = np.stack([x + rng.integers(0, 16, N_PARTS), y + rng.integers(0, 12, N_PARTS)], 1)
            parts[image_id] = np.column_stack([np.where(visible[:, None], xy, 0), visible])
            attributes[image_id] = np.column_stack([rng.integers(0, 2, N_ATTRIBUTES),
                                                    rng.integers(1, 5, N_ATTRIBUTES)])
    ids = sorted(paths)

    for image_id in ids:
        path = folder / "images" / paths[image_id]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (WIDTH, HEIGHT), colour[image_id]).save(path, quality=95)
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        x, y, w, h = bbox[image_id]
        mask[int(y):int(y + h), int(x):int(x + w)] = 255
        mask_path = root / "segmentations" / Path(paths[image_id]).with_suffix(".png")
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(mask_path)

    def write(name: str, lines: list[str]) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("\n".join(lines) + "\n")

    write("images.txt", [f"{i} {paths[i]}" for i in ids])
    write("image_class_labels.txt", [f"{i} {labels[i]}" for i in ids])
    write("train_test_split.txt", [f"{i} {is_train[i]}" for i in ids])
    write("bounding_boxes.txt", [f"{i} {' '.join(f'{v:.1f}' for v in bbox[i])}" for i in ids])
    write("classes.txt", [f"{c} {name}" for c, name in enumerate(CLASS_FOLDERS, 1)])
    write("parts/parts.txt", [f"{p} part name {p}" for p in range(1, N_PARTS + 1)])
    write("parts/part_locs.txt", [f"{i} {p + 1} {parts[i][p, 0]:.1f} {parts[i][p, 1]:.1f} "
                                  f"{int(parts[i][p, 2])}" for i in ids for p in range(N_PARTS)])
    lines = [f"{i} {a + 1} {attributes[i][a, 0]} {attributes[i][a, 1]} {rng.random() * 20:.4f}"
             for i in ids for a in range(N_ATTRIBUTES)]
    lines[5] += " 0"  # some real lines carry an extra field
    write("attributes/image_attribute_labels.txt", lines)
    write("attributes/class_attribute_labels_continuous.txt",
          [" ".join(f"{v:.4f}" for v in rng.random(N_ATTRIBUTES) * 100) for _ in CLASS_FOLDERS])
    (root / "attributes.txt").write_text(
        "\n".join(f"{a} has_attribute_{a}::value" for a in range(1, N_ATTRIBUTES + 1)) + "\n")
    return TinyCUB(root, paths, labels, is_train, colour, bbox, parts, attributes)
