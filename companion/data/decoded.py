"""Decoded images kept between epochs: each file decoded and resized once, then read from memory.

Every training epoch and every evaluation pass would otherwise decode the same JPEGs again.
:func:`decoded_images` decodes a list of files once, resizes each so that its shorter side is
``resize`` (the first step of the classification transforms, whose own ``Resize`` then finds the
size already right and returns the same pixels) and keeps the uint8 pixels in one flat array.
The array is cached on disk (written atomically, keyed by the files' paths, sizes and
modification times and by ``resize``), so the next chapter on the same data loads it instead.

Memory: 3 bytes a pixel of the resized images. CUB-200-2011 at ``image_size=224`` (shorter side
256, most images 500 × 375 before) holds about 1.6 GB per split; at the paper's 448 pixels four
times that. Above ``limit_mb`` (``$COMPANION_IMAGE_CACHE_MB``, default 2048 MB per split; 0 turns
the cache off) nothing is kept and the images are decoded every time, as without the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..io import CorruptFileError, load_checked, save_atomic
from ..runtime import cache_dir

__all__ = ["DecodedImages", "decoded_images", "image_cache_limit_mb"]

FORMAT = "companion.decoded_images/1"
LIMIT_ENV = "COMPANION_IMAGE_CACHE_MB"
DEFAULT_LIMIT_MB = 2048
N_ESTIMATE = 64  # files whose header sizes estimate the memory before anything is decoded


class DecodedImages:
    """RGB images of different sizes in one flat uint8 tensor; ``images[i]`` is a PIL image."""

    def __init__(self, pixels: torch.Tensor, shapes: torch.Tensor):
        if pixels.dtype != torch.uint8 or pixels.ndim != 1 or shapes.ndim != 2 \
                or shapes.shape[1] != 2:
            raise ValueError("need a flat uint8 pixel tensor and an (n, 2) tensor of heights and "
                             f"widths, got {pixels.dtype} {tuple(pixels.shape)} and "
                             f"{tuple(shapes.shape)}.")
        sizes = shapes[:, 0].long() * shapes[:, 1].long() * 3
        if int(sizes.sum()) != len(pixels):
            raise ValueError(f"the shapes hold {int(sizes.sum())} bytes, the pixels {len(pixels)}.")
        self.pixels, self.shapes = pixels, shapes.long()
        self._starts = (torch.cumsum(sizes, 0) - sizes).tolist()
        self._hw = self.shapes.tolist()

    def __len__(self) -> int:
        return len(self._hw)

    @property
    def nbytes(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> Image.Image:
        (h, w), start = self._hw[index], self._starts[index]
        return Image.fromarray(self.pixels[start:start + h * w * 3].view(h, w, 3).numpy(), "RGB")


def image_cache_limit_mb() -> float:
    """The memory a :class:`DecodedImages` may take, in MB (``$COMPANION_IMAGE_CACHE_MB``)."""
    value = os.environ.get(LIMIT_ENV, "")
    try:
        limit = float(value) if value.strip() else float(DEFAULT_LIMIT_MB)
    except ValueError:
        limit = -1.0
    if not limit >= 0:
        raise ValueError(f"{LIMIT_ENV}={value!r} must be a number of megabytes ≥ 0 (0 turns the "
                         "decoded-image cache off).")
    return limit


def _resized_shape(width: int, height: int, resize: int) -> tuple[int, int]:
    """(height, width) after ``torchvision.transforms.Resize(resize)``: shorter side ``resize``."""
    short, long = min(width, height), max(width, height)
    other = int(resize * long / short)
    return (resize, other) if height <= width else (other, resize)


def _key(paths: Sequence[Path], resize: int) -> str:
    """SHA-256 of the format, ``resize`` and every file's path, size and modification time."""
    files = []
    for path in paths:
        stat = os.stat(path)
        files.append([str(path), stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"format": FORMAT, "resize": int(resize), "files": files})
    return hashlib.sha256(text.encode()).hexdigest()


def _load_cached(path: Path, key: str, n: int) -> DecodedImages | None:
    if not path.exists():
        return None
    try:
        state = load_checked(path, what="decoded-image cache",
                             fix="The images are decoded again and the file overwritten.")
    except CorruptFileError as err:
        warnings.warn(str(err), stacklevel=3)
        return None
    if (not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != key
            or len(state.get("shapes", ())) != n):
        return None
    return DecodedImages(state["pixels"], state["shapes"])


def decoded_images(paths: Sequence[str | os.PathLike], resize: int,
                   read: Callable[[int], Image.Image], *, name: str = "images",
                   limit_mb: float | None = None) -> DecodedImages | None:
    """The images ``read(i)`` of ``paths``, resized to shorter side ``resize``; None above the limit.

    ``read(i)`` decodes file ``paths[i]`` (an RGB PIL image); ``name`` prefixes the cache file in
    ``cache_dir("images")``. A cached copy is used while every file keeps its path, size and
    modification time; a damaged one is rebuilt. ``limit_mb`` defaults to
    :func:`image_cache_limit_mb`: when the header sizes of a sample of the files, or the images
    as decoded, would take more, None is returned and nothing is kept.
    """
    from torchvision.transforms import Resize

    paths = [Path(p) for p in paths]
    resize = int(resize)
    if resize < 1:
        raise ValueError(f"resize must be a positive number of pixels, got {resize}.")
    limit = (image_cache_limit_mb() if limit_mb is None else float(limit_mb)) * 2**20
    if not paths or limit <= 0:
        return None
    sample = sorted({round(j * (len(paths) - 1) / max(N_ESTIMATE - 1, 1))
                     for j in range(min(len(paths), N_ESTIMATE))})
    per_image = []
    for i in sample:
        with Image.open(paths[i]) as header:
            h, w = _resized_shape(*header.size, resize)
        per_image.append(3 * h * w)
    if np.mean(per_image) * len(paths) > limit:
        return None
    key = _key(paths, resize)
    file = cache_dir("images") / f"{name}_{key[:20]}.pt"
    if (hit := _load_cached(file, key, len(paths))) is not None:
        return hit
    resizer = Resize(resize)
    chunks, shapes, total = [], [], 0
    for i in range(len(paths)):
        array = np.asarray(resizer(read(i)).convert("RGB"), dtype=np.uint8)
        total += array.size
        if total > limit:
            return None
        chunks.append(torch.from_numpy(array.reshape(-1).copy()))
        shapes.append(array.shape[:2])
    images = DecodedImages(torch.cat(chunks), torch.as_tensor(shapes, dtype=torch.long))
    save_atomic({"format": FORMAT, "key": key, "pixels": images.pixels, "shapes": images.shapes},
                file)
    return images
