"""A tiny DAVIS 2017 in the real on-disk format, written in code for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


def write_tiny_davis(root: Path, sequences: tuple[str, ...] = ("bear", "car"), n_frames: int = 3,
                     size: tuple[int, int] = (12, 20),
                     train: tuple[str, ...] | None = None) -> Path:
    """Write ``sequences`` of ``n_frames`` JPEGs of ``size`` (height, width) with palette masks.

    Every sequence lists in ``val``; ``train`` lists ``train`` (default: the first sequence).
    Object 1 is a 4-row bar moving right one pixel per frame; the second sequence adds object 2
    in the lower right. Frames are grey, brighter with time, with the objects drawn white.
    Returns the ``DAVIS`` folder.
    """
    base = root / "DAVIS"
    (base / "ImageSets" / "2017").mkdir(parents=True)
    (base / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    (base / "ImageSets" / "2017" / "train.txt").write_text(
        "\n".join(sequences[:1] if train is None else train) + "\n")
    for s, seq in enumerate(sequences):
        (base / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        (base / "Annotations" / "480p" / seq).mkdir(parents=True)
        for t in range(n_frames):
            ids = np.zeros(size, dtype=np.uint8)
            ids[:4, t:t + 3] = 1
            if s == 1:
                ids[6:, 10:] = 2
            img = np.full((*size, 3), 40 * t % 200, dtype=np.uint8)
            img[ids > 0] = 255
            Image.fromarray(img).save(base / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
            ann = Image.fromarray(ids, mode="P")
            ann.putpalette(PALETTE)
            ann.save(base / "Annotations" / "480p" / seq / f"{t:05d}.png")
    return base


# -- real shapes: DAVIS 2017's 60 training and 30 validation sequences -----------------------------

REAL_N_TRAIN, REAL_N_VAL = 60, 30
REAL_OBJECTS = {"train": 144, "val": 61}  # objects over all sequences of each split


def _object_counts(n_sequences: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """Objects per sequence: 1 to 5 (one sequence of a split up to 7), summing to ``total``."""
    counts = rng.choice([1, 2, 3, 4, 5], n_sequences, p=[0.35, 0.3, 0.2, 0.1, 0.05])
    while counts.sum() != total:
        i = rng.integers(n_sequences)
        counts[i] += 1 if counts.sum() < total else -1
        counts[i] = int(np.clip(counts[i], 1, 7))
    return counts


def write_real_shapes_davis(root: Path, size: tuple[int, int] = (36, 64), seed: int = 0) -> Path:
    """DAVIS 2017 at its real shapes: 60 training and 30 validation sequences (disjoint, as in
    ``ImageSets/2017``) of 50 to 104 frames, 144 and 61 objects, tiny ``size`` (height, width)
    frames of 480p's aspect ratio. Each object is a box of its own grey level moving on its own
    path; masks are palette PNGs with ids 1..n. Returns the ``DAVIS`` folder.
    """
    rng = np.random.default_rng(seed)
    base = root / "DAVIS"
    (base / "ImageSets" / "2017").mkdir(parents=True)
    names = {"train": [f"train-seq-{i:02d}" for i in range(REAL_N_TRAIN)],
             "val": [f"val-seq-{i:02d}" for i in range(REAL_N_VAL)]}
    palette = list(rng.integers(0, 256, 256 * 3).astype(int))
    palette[:3] = [0, 0, 0]
    h, w = size
    for split, seqs in names.items():
        (base / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(seqs) + "\n")
        for seq, n_obj in zip(seqs, _object_counts(len(seqs), REAL_OBJECTS[split], rng),
                              strict=True):
            n_frames = int(rng.integers(50, 105))
            (base / "JPEGImages" / "480p" / seq).mkdir(parents=True)
            (base / "Annotations" / "480p" / seq).mkdir(parents=True)
            start = rng.uniform([0, 0], [h - 8, w - 12], (n_obj, 2))
            speed = rng.uniform(-0.3, 0.3, (n_obj, 2))
            box = rng.integers([4, 6], [h // 3, w // 3], (n_obj, 2))
            background = rng.integers(0, 120)
            for t in range(n_frames):
                ids = np.zeros(size, dtype=np.uint8)
                for o in range(n_obj):
                    y, x = np.clip(start[o] + speed[o] * t, 0, [h - box[o, 0], w - box[o, 1]])
                    ids[int(y):int(y) + box[o, 0], int(x):int(x) + box[o, 1]] = o + 1
                img = np.full((h, w, 3), background, dtype=np.uint8)
                img[ids > 0] = (130 + 25 * ids[ids > 0, None]).clip(0, 255)
                Image.fromarray(img).save(base / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
                ann = Image.fromarray(ids, mode="P")
                ann.putpalette(palette)
                ann.save(base / "Annotations" / "480p" / seq / f"{t:05d}.png")
    return base
