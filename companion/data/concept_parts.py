"""Concept parts: synthetic images whose classes are known sets of parts, with exact part masks.

Each class is defined by ``parts_per_class`` parts (a part is a shape drawn in a colour with a
texture). Classes come in superclasses: siblings share a core of parts and differ in the rest, so
the class–part matrix carries a known hierarchy. Every image shows the parts of its class (some
dropped out), a few distractor parts and a textured background, each part in its own grid cell,
so a per-pixel part map is exact. In the training split the background may be correlated with
the class (a TravelingBirds-style shortcut); in the test split it is always random.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .checks import check_choice, check_fraction, check_int

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")
COLOURS = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.10, 0.70, 0.20),
    "blue": (0.15, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "magenta": (0.85, 0.20, 0.85),
    "cyan": (0.10, 0.80, 0.85),
}
TEXTURES = ("solid", "striped", "dotted")
SHADE = 0.5  # the dark pixels of a texture have SHADE times the part's colour
MAX_PARTS = len(SHAPES) * len(TEXTURES)
SPLITS = ("train", "test")
MIN_CELL = 8  # pixels per grid cell below which shapes and textures can't be told apart
BACKGROUND_TONES = (
    (0.55, 0.50, 0.42),
    (0.40, 0.48, 0.40),
    (0.40, 0.44, 0.54),
    (0.52, 0.52, 0.52),
    (0.32, 0.30, 0.34),
)
BACKGROUND_PATTERNS = ("plain", "rows", "columns", "checks")
BACKGROUND_CONTRAST = 0.06
FAMILIES = ("finch", "gull", "wren", "heron", "owl", "jay", "swift", "crane", "tern", "lark",
            "kite", "dove")
ROTATION_STEP = 15  # degrees: angles are drawn on this lattice so that stencils can be shared
_CHUNK = 1024  # images rendered at once; bounds the memory of intermediate arrays


@dataclass(frozen=True)
class Part:
    """One part: a shape drawn in a colour with a texture."""

    shape: str
    colour: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.texture} {self.shape}"

    @property
    def rgb(self) -> tuple[float, float, float]:
        return COLOURS[self.colour]


def part_vocabulary(n_parts: int = 16) -> tuple[Part, ...]:
    """The first ``n_parts`` parts; any two differ in at least two of shape, colour and texture."""
    n_parts = check_int("n_parts", n_parts, minimum=2)
    if n_parts > MAX_PARTS:
        raise ValueError(f"n_parts={n_parts} is too many: there are {MAX_PARTS} distinct parts "
                         f"({len(SHAPES)} shapes x {len(TEXTURES)} textures; the colour follows).")
    colours = tuple(COLOURS)
    parts = []
    for i in range(n_parts):
        # (shape, texture) runs over all 18 pairs; colour = shape + 2 texture (mod 6) makes any
        # two of the three attributes determine the third, hence the distance of two.
        s, t = i % len(SHAPES), (i + i // len(SHAPES)) % len(TEXTURES)
        parts.append(Part(SHAPES[s], colours[(s + 2 * t) % len(colours)], TEXTURES[t]))
    return tuple(parts)


@dataclass(frozen=True, eq=False, repr=False)
class ConceptParts:
    """Images, labels and ground truth of one split of the concept-parts dataset.

    ``part_map`` holds 0 for background and ``p + 1`` where part ``p`` is drawn; ``class_parts``
    is the class–part matrix; ``superclass`` gives each class's group of siblings.
    """

    images: torch.Tensor          # (N, 3, H, W) float32 in [0, 1]
    labels: torch.Tensor          # (N,) int64
    part_map: torch.Tensor        # (N, H, W) uint8
    part_present: torch.Tensor    # (N, P) bool: part p is drawn in image n
    background: torch.Tensor      # (N,) int64 background style
    class_parts: torch.Tensor     # (C, P) bool
    superclass: torch.Tensor      # (C,) int64
    class_background: torch.Tensor  # (C,) int64: the style a shortcut ties to each class
    parts: tuple[Part, ...]
    class_names: tuple[str, ...]
    superclass_names: tuple[str, ...]
    split: str
    seed: int

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __repr__(self) -> str:
        return (f"ConceptParts(split={self.split!r}, n_images={len(self)}, "
                f"image_size={self.image_size}, n_classes={self.n_classes}, "
                f"n_parts={self.n_parts}, seed={self.seed})")

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def n_classes(self) -> int:
        return self.class_parts.shape[0]

    @property
    def n_parts(self) -> int:
        return self.class_parts.shape[1]

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    def part_masks(self, index: int | slice | torch.Tensor | np.ndarray | list[int]
                   ) -> torch.Tensor:
        """Boolean part masks: ``(P, H, W)`` for one index, ``(B, P, H, W)`` for several."""
        ids = torch.arange(1, self.n_parts + 1, dtype=self.part_map.dtype)
        return self.part_map[index].unsqueeze(-3) == ids[:, None, None]

    def linkage(self, method: str = "average") -> np.ndarray:
        """SciPy linkage of the classes by Jaccard distance of their part sets."""
        from scipy.cluster.hierarchy import linkage

        return linkage(self.class_parts.numpy(), method=method, metric="jaccard")

    def dataset(self, transform=None) -> Dataset:
        """A torch ``Dataset`` of ``(image, label)`` pairs; ``transform`` maps the image tensor."""
        return _ImageLabelDataset(self.images, self.labels, transform)


class _ImageLabelDataset(Dataset):
    """``(image, label)`` pairs from two tensors, with an optional image transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index]
        return (image if self.transform is None else self.transform(image)), self.labels[index]


def make_concept_parts(n_images: int = 2000, *, image_size: int = 64, n_classes: int = 10,
                       n_parts: int = 16, parts_per_class: int = 4, siblings: int = 3,
                       split: str = "train", seed: int = 0, shortcut: float = 0.0,
                       distractors: float = 0.3, dropout: float = 0.1, noise: float = 0.02,
                       grid: int = 4, rotation: float = 0.0) -> ConceptParts:
    """Generate one split of the concept-parts dataset.

    The classes depend on ``seed`` only, so ``split="train"`` and ``split="test"`` with the same
    seed share them while drawing different images. ``siblings`` classes form a superclass and
    share ``ceil(parts_per_class / 2)`` core parts. ``shortcut`` is the probability that a training
    image shows its class's background (test backgrounds are always random), ``distractors`` the
    mean number of parts from outside the class per image, ``dropout`` the probability that a
    class part is left out (at least half of them stay), ``noise`` the std of pixel noise,
    ``rotation`` the largest angle (degrees, drawn uniformly in steps of 15) by which a part is
    turned inside its cell; at 0 (the default) no angle is drawn and no part is turned.
    """
    n_images = check_int("n_images", n_images)
    image_size = check_int("image_size", image_size)
    n_classes = check_int("n_classes", n_classes, minimum=2)
    parts = part_vocabulary(n_parts)
    parts_per_class = check_int("parts_per_class", parts_per_class, minimum=2)
    siblings = check_int("siblings", siblings)
    split = check_choice("split", split, SPLITS)
    seed = check_int("seed", seed, minimum=0)
    shortcut = check_fraction("shortcut", shortcut)
    dropout = check_fraction("dropout", dropout, closed=False)
    distractors = check_fraction("distractors", distractors, high=float(MAX_PARTS))
    noise = check_fraction("noise", noise)
    grid = check_int("grid", grid)
    rotation = check_fraction("rotation", rotation, high=180.0)
    cell = image_size // grid
    if cell < MIN_CELL:
        raise ValueError(f"image_size={image_size} is too small for a {grid}x{grid} grid of parts: "
                         f"each part needs at least {MIN_CELL} pixels per cell; use image_size >= "
                         f"{MIN_CELL * grid} or a smaller grid.")
    if parts_per_class > grid * grid:
        raise ValueError(f"parts_per_class={parts_per_class} does not fit a {grid}x{grid} grid; "
                         "raise grid (and image_size) or lower parts_per_class.")

    class_rng = np.random.default_rng([seed, 0])
    class_parts, superclass = _define_classes(n_classes, len(parts), parts_per_class, siblings,
                                              class_rng)
    n_styles = len(BACKGROUND_TONES) * len(BACKGROUND_PATTERNS)
    class_background = class_rng.permutation(n_styles)[np.arange(n_classes) % n_styles]

    rng = np.random.default_rng([seed, 1 + SPLITS.index(split)])
    labels = rng.permutation(np.arange(n_images) % n_classes)
    background = rng.integers(0, n_styles, n_images)
    if split == "train" and shortcut > 0:
        tied = rng.random(n_images) < shortcut
        background[tied] = class_background[labels[tied]]
    slots = _layout(labels, class_parts, grid, cell, dropout, distractors, rng)
    steps = int(rotation // ROTATION_STEP)
    slots["angle"] = (ROTATION_STEP * rng.integers(-steps, steps + 1, slots["part"].shape)
                      if steps else np.zeros(slots["part"].shape, np.int64))

    images = np.empty((n_images, 3, image_size, image_size), np.float32)
    part_map = np.zeros((n_images, image_size, image_size), np.uint8)
    _draw_parts(part_map, slots, parts, cell, offset=(image_size - grid * cell) // 2)
    jitter = np.empty((min(n_images, _CHUNK), 3, image_size, image_size), np.float32)
    for start in range(0, n_images, _CHUNK):
        chunk = images[start:start + _CHUNK]
        _paint(chunk, part_map[start:start + _CHUNK], background[start:start + _CHUNK], parts, cell)
        if noise > 0:
            z = jitter[:len(chunk)]
            rng.standard_normal(dtype=np.float32, out=z)
            z *= noise
            chunk += z
            np.clip(chunk, 0.0, 1.0, out=chunk)

    part_present = np.zeros((n_images, len(parts)), bool)
    valid = slots["part"] >= 0
    part_present[np.nonzero(valid)[0], slots["part"][valid]] = True

    n_super = int(superclass.max()) + 1
    family = [FAMILIES[s] if s < len(FAMILIES) else f"family {s}" for s in range(n_super)]
    rank = [int((superclass[:c] == superclass[c]).sum()) for c in range(n_classes)]
    class_names = tuple(f"{family[s]} {chr(ord('a') + r)}" for s, r in zip(superclass, rank, strict=True))
    return ConceptParts(
        images=torch.from_numpy(images), labels=torch.from_numpy(labels.astype(np.int64)),
        part_map=torch.from_numpy(part_map), part_present=torch.from_numpy(part_present),
        background=torch.from_numpy(background.astype(np.int64)),
        class_parts=torch.from_numpy(class_parts), superclass=torch.from_numpy(superclass),
        class_background=torch.from_numpy(class_background.astype(np.int64)), parts=parts,
        class_names=class_names, superclass_names=tuple(family), split=split, seed=seed)


def _define_classes(n_classes: int, n_parts: int, parts_per_class: int, siblings: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class–part matrix ``(C, P)`` and superclass ids ``(C,)``.

    Each superclass owns ``core`` parts; each class adds ``specific`` parts from a shared pool, all
    classes with different sets. Siblings then share at least ``core`` parts and classes of
    different superclasses at most ``specific - 1 <= core - 1``, so the hierarchy can be read off
    the matrix by any linkage.
    """
    n_super = math.ceil(n_classes / siblings)
    core, specific = math.ceil(parts_per_class / 2), parts_per_class // 2
    pool_size = n_parts - core * n_super
    if pool_size < specific or math.comb(pool_size, specific) < n_classes:
        raise ValueError(
            f"{n_classes} classes of {parts_per_class} parts in superclasses of {siblings} need "
            f"more than n_parts={n_parts} parts ({n_super} superclasses use {core * n_super} core "
            f"parts, leaving {max(pool_size, 0)} for the {specific} class-specific parts). Raise "
            f"n_parts (at most {MAX_PARTS}) or siblings, or lower n_classes or parts_per_class.")
    order = rng.permutation(n_parts)
    cores = order[:core * n_super].reshape(n_super, core)
    free = list(itertools.combinations(sorted(order[core * n_super:]), specific))
    superclass = np.arange(n_classes) * n_super // n_classes
    class_parts = np.zeros((n_classes, n_parts), bool)
    usage = np.zeros(n_parts)
    for c in range(n_classes):
        # least-used parts first (ties at random) so that the pool is spread over the classes
        cost = np.array([usage[list(combo)].sum() for combo in free])
        combo = free.pop(rng.choice(np.flatnonzero(cost == cost.min())))
        usage[list(combo)] += 1
        class_parts[c, list(combo)] = True
        class_parts[c, cores[superclass[c]]] = True
    return class_parts, superclass.astype(np.int64)


def _layout(labels: np.ndarray, class_parts: np.ndarray, grid: int, cell: int, dropout: float,
            distractors: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per image and slot: part id (-1 = empty), grid cell, size and offset inside the cell."""
    n, n_parts = len(labels), class_parts.shape[1]
    k = int(class_parts.sum(1).max())
    own = np.argsort(~class_parts, axis=1, kind="stable")[:, :k][labels]   # (N, k) class parts
    # drop Binomial(k, dropout) class parts per image, keeping at least half of them
    n_drop = np.minimum(rng.binomial(k, dropout, n), k - math.ceil(k / 2))
    dropped = np.argsort(rng.random((n, k)), axis=1).argsort(axis=1) < n_drop[:, None]
    own = np.where(dropped, -1, own)
    # distractors: Poisson(distractors) parts from outside the class, as many as there is room for
    room = min(grid * grid - k, n_parts - k)
    n_extra = np.minimum(rng.poisson(distractors, n), room)
    keys = np.where(class_parts[labels], np.inf, rng.random((n, n_parts)))
    extra = np.argsort(keys, axis=1)[:, :room]
    extra = np.where(np.arange(room) < n_extra[:, None], extra, -1)
    part = np.concatenate([own, extra], axis=1)
    n_slots = part.shape[1]
    cells = np.argsort(rng.random((n, grid * grid)), axis=1)[:, :n_slots]
    low, high = max(3, round(0.6 * cell)), cell - 2
    size = rng.integers(low, high + 1, (n, n_slots))
    # top-left corner in [1, cell - 1 - size] keeps a gap of at least two pixels between parts
    dy = 1 + (rng.random((n, n_slots)) * (cell - 1 - size)).astype(np.int64)
    dx = 1 + (rng.random((n, n_slots)) * (cell - 1 - size)).astype(np.int64)
    return {"part": part, "y": (cells // grid) * cell + dy, "x": (cells % grid) * cell + dx,
            "size": size}


def _shape_mask(shape: str, size: int, angle: float = 0.0) -> np.ndarray:
    """A ``(size, size)`` boolean stencil of a shape, turned by ``angle`` degrees (clipped to it)."""
    u = (np.arange(size) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(u, u, indexing="ij")
    if angle:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        y, x = c * y - s * x, s * y + c * x
    r2 = x ** 2 + y ** 2
    masks = {
        "circle": r2 <= 1.0,
        "square": (np.abs(x) <= 0.9) & (np.abs(y) <= 0.9),
        "triangle": (y >= -0.9) & (y <= 0.9) & (np.abs(x) <= (y + 0.9) / 1.8 * 0.95),
        "cross": (np.abs(x) <= 0.34) | (np.abs(y) <= 0.34),
        "ring": (r2 <= 1.0) & (r2 >= 0.3),
        "bar": np.abs(y) <= 0.4,
    }
    return masks[shape]


def _draw_parts(part_map: np.ndarray, slots: dict[str, np.ndarray], parts: tuple[Part, ...],
                cell: int, offset: int) -> None:
    """Write ``p + 1`` into ``part_map`` at every pixel of every placed part (in place)."""
    valid = slots["part"] >= 0
    n_idx = np.nonzero(valid)[0]
    part, size, angle = slots["part"][valid], slots["size"][valid], slots["angle"][valid]
    y0, x0 = slots["y"][valid] + offset, slots["x"][valid] + offset
    for p, s, a in sorted(set(zip(part.tolist(), size.tolist(), angle.tolist(), strict=True))):
        sel = (part == p) & (size == s) & (angle == a)
        ty, tx = np.nonzero(_shape_mask(parts[p].shape, s, a))
        part_map[n_idx[sel, None], y0[sel, None] + ty, x0[sel, None] + tx] = p + 1


def _texture_fields(height: int, width: int, cell: int) -> np.ndarray:
    """``(T, H, W)`` bool: where each texture shows the part's full colour (else its shade)."""
    period = max(4, cell // 4)
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    fields = {
        "solid": np.ones((height, width), bool),
        "striped": ((x + y) // (period // 2)) % 2 == 0,
        "dotted": ~((y % period < period // 2) & (x % period < period // 2)),
    }
    return np.stack([fields[t] for t in TEXTURES])


def _background_fields(height: int, width: int, cell: int) -> np.ndarray:
    """``(S, 3, H, W)`` float32: every background style (tone x pattern)."""
    period = max(4, cell // 2)
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rows, cols = (y // (period // 2)) % 2 * 2 - 1, (x // (period // 2)) % 2 * 2 - 1
    patterns = {"plain": np.zeros_like(y), "rows": rows, "columns": cols, "checks": rows * cols}
    tones = np.asarray(BACKGROUND_TONES, np.float32)[:, :, None, None]
    waves = np.stack([patterns[p] for p in BACKGROUND_PATTERNS]).astype(np.float32)[:, None]
    styles = tones[:, None] + BACKGROUND_CONTRAST * waves[None]
    return styles.reshape(-1, 3, height, width)


def _paint(images: np.ndarray, part_map: np.ndarray, background: np.ndarray,
           parts: tuple[Part, ...], cell: int) -> None:
    """Fill ``images`` (B, 3, H, W) with backgrounds and textured parts (in place)."""
    height, width = part_map.shape[1:]
    images[:] = _background_fields(height, width, cell)[background]
    # one full-size textured colour field per part (row 0: background), looked up per pixel
    textures = _texture_fields(height, width, cell)
    light = textures[[TEXTURES.index(p.texture) for p in parts]]
    rgb = np.asarray([p.rgb for p in parts], np.float32)[:, :, None, None]
    fields = rgb * np.where(light, np.float32(1.0), np.float32(SHADE))[:, None]
    fields = np.concatenate([np.zeros_like(fields[:1]), fields])
    lookup = part_map.astype(np.intp) * (height * width) + np.arange(height * width).reshape(
        height, width)
    drawn = part_map > 0
    for channel in range(3):
        np.copyto(images[:, channel], fields[:, channel].reshape(-1)[lookup], where=drawn)
