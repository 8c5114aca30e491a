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


# -- real shapes: 200 classes, 5,994 training and 5,794 test images in class order ----------------

REAL_N_CLASSES, REAL_N_TRAIN, REAL_N_TEST = 200, 5994, 5794


def real_split_counts() -> tuple[np.ndarray, np.ndarray]:
    """Training and test images per class, summing to CUB's 5,994 and 5,794.

    Like the real split: about 30 training images per class (six classes have 29) and a test
    split that is uneven (most classes 30, sixteen 29, ten only 11).
    """
    train = np.full(REAL_N_CLASSES, 30)
    train[[13, 47, 88, 120, 161, 199]] = 29
    test = np.full(REAL_N_CLASSES, 30)
    test[np.arange(5, REAL_N_CLASSES, 20)] = 11          # 10 classes
    test[np.arange(12, REAL_N_CLASSES, 12)[:16]] = 29    # 16 classes
    assert train.sum() == REAL_N_TRAIN and test.sum() == REAL_N_TEST
    return train, test


def real_class_folders() -> tuple[str, ...]:
    """``001.Black_footed_Albatross`` … ``200.Common_Yellowthroat`` style names (made up after 3)."""
    made_up = tuple(f"{c:03d}.Species_{c:03d}_Bird" for c in range(len(CLASS_FOLDERS) + 1,
                                                                   REAL_N_CLASSES))
    return CLASS_FOLDERS + made_up + ("200.Common_Yellowthroat",)


@dataclass(frozen=True)
class RealShapesCUB:
    """What :func:`write_real_shapes_cub` wrote (labels 0-based, in id order)."""

    root: Path
    labels: np.ndarray
    is_train: np.ndarray
    class_folders: tuple[str, ...]


def write_real_shapes_cub(root: Path, size: int = 32, seed: int = 0) -> RealShapesCUB:
    """CUB-200-2011 at its real shapes: 200 class folders, 11,788 ``size`` px JPEGs, ids in class
    order (as the real ``images.txt``: all of class 1, then class 2 …, train and test mixed within
    a class), and every annotation file the loader reads (15 parts, 312 attributes, boxes).

    Each class has its own colour and a bright square at its own place, with noise on top, so a
    small network learns something; each class shows its own set of attributes.
    """
    folder = root / "CUB_200_2011"
    rng = np.random.default_rng(seed)
    n_train, n_test = real_split_counts()
    classes = real_class_folders()
    labels = np.repeat(np.arange(REAL_N_CLASSES), n_train + n_test)
    is_train = np.concatenate([rng.permutation(np.r_[np.ones(a, int), np.zeros(b, int)])
                               for a, b in zip(n_train, n_test, strict=True)])
    n = len(labels)
    ids = np.arange(1, n + 1)

    hue = rng.integers(40, 216, (REAL_N_CLASSES, 3))
    cell = size // 4
    paths = []
    for i, label in enumerate(labels.tolist()):
        name = f"{classes[label].split('.', 1)[1]}_{i + 1:05d}_{700 + i}.jpg"
        paths.append(f"{classes[label]}/{name}")
    for c in range(REAL_N_CLASSES):
        (folder / "images" / classes[c]).mkdir(parents=True, exist_ok=True)
    noise = rng.integers(-30, 31, (64, size, size, 3))
    for i, label in enumerate(labels.tolist()):
        pixels = np.clip(hue[label] + noise[i % 64], 0, 255).astype(np.uint8)
        r, q = divmod(label % 16, 4)
        pixels[r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] = 255 - hue[label] // 2
        Image.fromarray(pixels).save(folder / "images" / paths[i], quality=90)

    def write(name: str, text: str) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)

    lines = lambda rows: "".join(f"{' '.join(map(str, row))}\n" for row in rows)
    write("images.txt", "".join(f"{i} {p}\n" for i, p in zip(ids, paths, strict=True)))
    write("image_class_labels.txt", lines(zip(ids, labels + 1, strict=True)))
    write("train_test_split.txt", lines(zip(ids, is_train, strict=True)))
    boxes = np.column_stack([rng.integers(0, size // 4, (n, 2)), rng.integers(size // 2, size - size // 4,
                                                                              (n, 2))])
    write("bounding_boxes.txt", lines(zip(ids, *(boxes.astype(float).T), strict=True)))
    write("classes.txt", "".join(f"{c} {name}\n" for c, name in enumerate(classes, 1)))
    write("parts/parts.txt", "".join(f"{p} part {p}\n" for p in range(1, N_PARTS + 1)))
    visible = rng.random((n, N_PARTS)) < 0.7
    xy = rng.integers(0, size, (n, N_PARTS, 2)) * visible[..., None]
    write("parts/part_locs.txt", "".join(
        f"{i} {p + 1} {xy[i - 1, p, 0]}.0 {xy[i - 1, p, 1]}.0 {int(visible[i - 1, p])}\n"
        for i in ids.tolist() for p in range(N_PARTS)))
    # attributes: each class shows its own ones (probability 0.8) and rarely the others (0.05)
    class_p = np.where(rng.random((REAL_N_CLASSES, N_ATTRIBUTES)) < 0.1, 0.8, 0.05)
    present = (rng.random((n, N_ATTRIBUTES)) < class_p[labels]).astype(int)
    certainty = rng.integers(1, 5, (n, N_ATTRIBUTES))
    per_attribute = [f" {a + 1} " for a in range(N_ATTRIBUTES)]
    chunks = []
    for i in range(n):
        head, p, c = f"{i + 1}", present[i].tolist(), certainty[i].tolist()
        chunks.append("".join(f"{head}{per_attribute[a]}{p[a]} {c[a]} 1.5\n"
                              for a in range(N_ATTRIBUTES)))
    write("attributes/image_attribute_labels.txt", "".join(chunks))
    percent = np.stack([present[labels == c].mean(0) * 100 for c in range(REAL_N_CLASSES)])
    write("attributes/class_attribute_labels_continuous.txt",
          "".join(" ".join(f"{v:.4f}" for v in row) + "\n" for row in percent))
    (root / "attributes.txt").write_text(
        "".join(f"{a} has_attribute_{a}::value\n" for a in range(1, N_ATTRIBUTES + 1)))
    return RealShapesCUB(root, labels, is_train, classes)
