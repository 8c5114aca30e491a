"""Moving shapes: synthetic videos with instance masks, classes and persistent track ids.

Each clip shows a few coloured shapes (the class is the shape, never the colour) that move
smoothly over a textured background, bounce or drift in and out of view, rotate, and occlude one
another in a fixed depth order. Every frame comes with the visible mask of every object, and the
object's slot index is its track id for the whole clip. Clip ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import Dataset

from .checks import check_int

CLASSES = ("circle", "square", "triangle", "cross")


@dataclass(frozen=True)
class MovingShapes:
    """A set of synthetic clips with ground truth.

    ``videos`` (V, T, 3, H, W) uint8; ``masks`` (V, T, K, H, W) bool, the visible part of object
    slot k in frame t (slot k is the object's track id); ``labels`` (V, K) long class indices, -1 for
    an unused slot.
    """

    videos: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return self.videos.shape[0]

    @property
    def n_frames(self) -> int:
        return self.videos.shape[1]

    @property
    def image_size(self) -> int:
        return self.videos.shape[-1]

    def clip(self, index: int) -> dict[str, torch.Tensor]:
        """Clip ``index`` as ``{"frames": (T, 3, H, W) float in [0, 1], "masks", "labels"}``."""
        return {"frames": self.videos[index].float() / 255.0, "masks": self.masks[index],
                "labels": self.labels[index]}

    def frames(self) -> FrameDataset:
        """Every frame of every clip as a dataset of ``{"image", "masks", "labels"}``."""
        return FrameDataset(self)

    def chains(self, length: int = 3, frame_range: int = 5, per_clip: int = 1,
               seed: int = 0) -> ChainDataset:
        """Short frame chains (``per_clip`` random ones per clip) for sparse fine-tuning."""
        return ChainDataset(self, length=length, frame_range=frame_range, per_clip=per_clip, seed=seed)


class FrameDataset(Dataset):
    """Single frames of a :class:`MovingShapes` set (for dense training and frame metrics)."""

    def __init__(self, data: MovingShapes):
        self.data = data

    def __len__(self) -> int:
        return len(self.data) * self.data.n_frames

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        v, t = divmod(int(index), self.data.n_frames)
        return {"image": self.data.videos[v, t].float() / 255.0, "masks": self.data.masks[v, t],
                "labels": self.data.labels[v]}


class ChainDataset(Dataset):
    """Chains of ``length`` frames in time order, neighbours at most ``frame_range`` apart.

    The paper samples a key frame and two reference frames within ±5 frames; we keep the chain in
    time order so that each frame's prior comes from the frame just before it.
    """

    def __init__(self, data: MovingShapes, length: int = 3, frame_range: int = 5, per_clip: int = 1,
                 seed: int = 0):
        if length < 2:
            raise ValueError(f"A chain needs at least 2 frames (a prior and a frame that uses it), "
                             f"got length={length}.")
        if data.n_frames < length:
            raise ValueError(f"Clips have {data.n_frames} frame(s) but chains of {length} were "
                             "requested: make the clips longer (n_frames) or the chains shorter.")
        if frame_range < 1 or per_clip < 1:
            raise ValueError(f"frame_range and per_clip must be at least 1, got {frame_range} and "
                             f"{per_clip}.")
        self.data, self.length, self.frame_range = data, length, frame_range
        rng = np.random.default_rng(seed)
        self.index = []
        for v in range(len(data)):
            for _ in range(per_clip):
                steps = rng.integers(1, frame_range + 1, size=length - 1)
                while steps.sum() > data.n_frames - 1:
                    steps = np.maximum(1, steps - 1)
                start = int(rng.integers(0, data.n_frames - int(steps.sum())))
                self.index.append((v, np.concatenate([[start], start + np.cumsum(steps)])))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        v, ts = self.index[index]
        ts = torch.as_tensor(ts)
        return {"frames": self.data.videos[v, ts].float() / 255.0, "masks": self.data.masks[v, ts],
                "labels": self.data.labels[v]}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: coloured blobs, a tilted stripe pattern and fine noise (H, W, 3)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.25, 0.6, size=3)
    blobs = gaussian_filter(rng.normal(size=(size, size, 3)), sigma=(size / 10, size / 10, 0))
    blobs /= np.abs(blobs).max() + 1e-8
    angle, freq = rng.uniform(0, np.pi), rng.uniform(4, 9)
    stripes = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    img = base + 0.15 * blobs + 0.06 * stripes[..., None] * rng.uniform(0.5, 1, size=3)
    return img + 0.03 * rng.normal(size=(size, size, 3))


def _shape_mask(kind: int, cx: float, cy: float, r: float, angle: float, size: int) -> np.ndarray:
    """Binary mask of one shape centred at (cx, cy) with radius r and rotation angle."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xx - cx, yy - cy
    u = np.cos(angle) * dx + np.sin(angle) * dy
    w = -np.sin(angle) * dx + np.cos(angle) * dy
    if CLASSES[kind] == "circle":
        return dx**2 + dy**2 <= r**2
    if CLASSES[kind] == "square":
        return np.maximum(np.abs(u), np.abs(w)) <= 0.8 * r
    if CLASSES[kind] == "triangle":
        # Intersection of three half-planes whose normals are 120 degrees apart.
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = angle + np.pi / 2 + 2 * np.pi * k / 3
            inside &= np.cos(a) * dx + np.sin(a) * dy <= 0.55 * r
        return inside
    arm = 0.33 * r
    return ((np.abs(u) <= arm) & (np.abs(w) <= r)) | ((np.abs(w) <= arm) & (np.abs(u) <= r))


def _trajectory(rng: np.random.Generator, n_frames: int, size: int, r: float,
                drift: bool) -> np.ndarray:
    """Centre positions (T, 2): smooth curved motion; bouncing inside the frame or drifting through."""
    speed = rng.uniform(1.5, 3.5)
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(-0.08, 0.08)
    if drift:
        # Start outside one border and head inwards, so the object enters (and may leave) the view.
        side = rng.integers(4)
        along = rng.uniform(0.25, 0.75) * size
        start = [(-r, along), (size + r, along), (along, -r), (along, size + r)][side]
        inward = [0.0, np.pi, np.pi / 2, -np.pi / 2][side]
        heading = inward + rng.uniform(-0.5, 0.5)
        pos = np.array(start, dtype=float) - speed * rng.integers(0, n_frames // 2 + 1) * np.array(
            [np.cos(heading), np.sin(heading)])
    else:
        pos = rng.uniform(r, size - r, size=2)
    out = np.empty((n_frames, 2))
    for t in range(n_frames):
        out[t] = pos
        heading += turn
        pos = pos + speed * np.array([np.cos(heading), np.sin(heading)])
        if not drift:
            for d in range(2):
                if pos[d] < r or pos[d] > size - r:
                    pos[d] = np.clip(pos[d], r, size - r)
                    heading = np.pi - heading if d == 0 else -heading
    return out


def _make_clip(rng: np.random.Generator, n_frames: int, size: int, n_objects: int,
               max_objects: int, n_classes: int):
    bg = _background(rng, size)
    labels = np.full(max_objects, -1, dtype=np.int64)
    labels[:n_objects] = rng.integers(0, n_classes, size=n_objects)
    radii = rng.uniform(0.09, 0.17, size=n_objects) * size
    colours = rng.uniform(0.0, 1.0, size=(n_objects, 3))
    colours[np.arange(n_objects), rng.integers(0, 3, size=n_objects)] = rng.uniform(0.85, 1.0, n_objects)
    drift = rng.random(n_objects) < 0.35
    paths = [_trajectory(rng, n_frames, size, radii[k], bool(drift[k])) for k in range(n_objects)]
    spins = rng.uniform(-0.15, 0.15, size=n_objects)
    angles0 = rng.uniform(0, 2 * np.pi, size=n_objects)
    depth = rng.permutation(n_objects)  # painted in this order: later ones occlude earlier ones
    frames = np.empty((n_frames, size, size, 3))
    masks = np.zeros((n_frames, max_objects, size, size), dtype=bool)
    for t in range(n_frames):
        img = bg + 0.02 * rng.normal(size=bg.shape)
        covered = np.zeros((size, size), dtype=bool)
        for k in depth[::-1]:  # front to back: an object's visible part excludes what is in front
            full = _shape_mask(labels[k], *paths[k][t], radii[k], angles0[k] + spins[k] * t, size)
            masks[t, k] = full & ~covered
            covered |= full
        for k in depth:
            img[masks[t, k]] = colours[k] * (1 + 0.06 * rng.normal(size=(masks[t, k].sum(), 1)))
        frames[t] = img
    video = np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    return video, masks, labels


def make_moving_shapes(n_videos: int = 32, n_frames: int = 12, image_size: int = 96,
                       objects: tuple[int, int] = (1, 3), max_objects: int = 4,
                       n_classes: int = len(CLASSES), seed: int = 0) -> MovingShapes:
    """Generate ``n_videos`` clips of ``n_frames`` frames of ``image_size`` squared pixels.

    Each clip holds between ``objects[0]`` and ``objects[1]`` objects (0 allowed: empty clips), of
    ``n_classes`` shape classes. Clip ``i`` is the same for any ``n_videos`` > i with the same seed.
    """
    n_videos, n_frames = check_int("n_videos", n_videos), check_int("n_frames", n_frames)
    image_size = check_int("image_size", image_size, minimum=16)
    max_objects = check_int("max_objects", max_objects, minimum=0)
    n_classes = check_int("n_classes", n_classes)
    seed = check_int("seed", seed, minimum=0)
    if not isinstance(objects, (tuple, list)) or len(objects) != 2:
        raise TypeError(f"objects must be a pair (min, max) of object counts, got {objects!r}.")
    lo, hi = (check_int(f"objects[{i}]", n, minimum=0) for i, n in enumerate(objects))
    if not lo <= hi <= max_objects:
        raise ValueError(f"objects={objects} must satisfy 0 <= min <= max <= max_objects "
                         f"({max_objects}).")
    if n_classes > len(CLASSES):
        raise ValueError(f"n_classes must be between 1 and {len(CLASSES)}, got {n_classes}.")
    children = np.random.SeedSequence(seed).spawn(n_videos)
    videos, masks, labels = [], [], []
    for child in children:
        rng = np.random.default_rng(child)
        v, m, lab = _make_clip(rng, n_frames, image_size, int(rng.integers(lo, hi + 1)),
                               max_objects, n_classes)
        videos.append(v), masks.append(m), labels.append(lab)
    return MovingShapes(videos=torch.from_numpy(np.stack(videos)),
                        masks=torch.from_numpy(np.stack(masks)),
                        labels=torch.from_numpy(np.stack(labels)),
                        classes=CLASSES[:n_classes])
