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
