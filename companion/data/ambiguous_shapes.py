"""Ambiguous shapes: synthetic scenes of nested and overlapping objects with instance masks.

Every scene holds one or two *groups* of shapes on a noisy background:

* ``nested``: an outer shape with a smaller inner shape near its centre. Two instances: the
  ``part`` (inner shape) and the ``whole`` (outer shape, inner included). A click near the
  centre of the whole lands on the part, so one click has two valid answers.
* ``overlap``: shape B lies partly on top of shape A. Three instances: ``object`` A (its visible
  part), ``object`` B, and the ``group`` A ∪ B.
* ``concentric``: four nested shapes around one centre, like a target. Four instances
  (``level``), the outermost shape and each shape inside it; all four centre clicks land on the
  innermost shape, so one click has four valid answers, one more than a segmenter's three masks.
  Clicks spread over the instance tell the levels apart.
* ``single``: one shape, one instance; a click is unambiguous.

``answers`` counts, per instance, the instances of its scene whose mask holds its centre click
(:func:`companion.data.prompts.centre_click`): 1 for an unambiguous click, 2 for a part and its
whole, up to 4 for a target. ``ambiguous`` is ``answers > 1``.

The ground truth of the segmentation task is an instance mask, so the data knows which answer
was meant, which the promptable segmenter cannot know from a single click.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .checks import check_int, check_number
from .prompts import centre_click

SHAPES = ("disk", "square", "diamond", "triangle", "ellipse")
GROUPS = ("nested", "overlap", "single", "concentric")
KINDS = ("single", "part", "whole", "object", "group", "level")
MIN_AREA = 12
LEVELS = (1.0, 0.75, 0.52, 0.32)  # radii of a concentric group's shapes, outermost first


@dataclass(frozen=True)
class AmbiguousShapes:
    """Scenes and their instances; instance ``i`` lives in image ``image_index[i]``."""

    images: torch.Tensor       # (N, 3, S, S) float in [0, 1]
    masks: torch.Tensor        # (M, S, S) bool, one instance mask per row
    image_index: torch.Tensor  # (M,) long
    kind: torch.Tensor         # (M,) long, index into KINDS
    group: torch.Tensor        # (M,) long, instances of one group share the id
    answers: torch.Tensor | None = None  # (M,) long; None: counted from the masks given

    def __post_init__(self):
        if self.answers is None:
            object.__setattr__(self, "answers", count_answers(self.masks, self.image_index))

    @property
    def ambiguous(self) -> torch.Tensor:
        """(M,) bool: the instance's centre click also lies on another instance of its scene."""
        return self.answers > 1

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def kind_names(self) -> list[str]:
        """The kind of every instance as a word (``part``, ``whole`` …)."""
        return [KINDS[k] for k in self.kind.tolist()]

    def instance(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The image and mask of instance ``i``."""
        return self.images[self.image_index[i]], self.masks[i]

    def subset(self, index) -> AmbiguousShapes:
        """The instances in ``index`` (images are kept whole and shared)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return AmbiguousShapes(self.images, self.masks[index], self.image_index[index],
                               self.kind[index], self.group[index], self.answers[index])

    def dataset(self, extra: dict[str, torch.Tensor] | None = None) -> InstanceDataset:
        """A torch ``Dataset`` of ``(image, mask, *extra)`` per instance."""
        return InstanceDataset(self, extra or {})


def count_answers(masks: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """Per instance, how many instances of its image hold its centre click (itself included).

    An empty mask has no centre click and counts 0.
    """
    answers = torch.zeros(len(masks), dtype=torch.long)
    full = masks.flatten(1).any(1)
    if not full.any():
        return answers
    x, y = centre_click(masks[full]).long().unbind(1)
    hit = masks[:, y, x].T  # hit[i, j]: mask j holds the centre click of non-empty instance i
    same = image_index[full][:, None] == image_index[None, :]
    answers[full] = (hit & same).sum(1)
    return answers


class InstanceDataset(Dataset):
    """One item per instance: its image (3, S, S), its mask (S, S) and any per-instance extras."""

    def __init__(self, data: AmbiguousShapes, extra: dict[str, torch.Tensor]):
        for name, value in extra.items():
            if len(value) != len(data):
                raise ValueError(f"extra {name!r} has {len(value)} rows but the data has "
                                 f"{len(data)} instances: give one row per instance.")
        self.data, self.extra = data, list(extra.values())

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image, mask = self.data.instance(i)
        return (image, mask.float(), *(value[i] for value in self.extra))


def _shape_mask(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float,
                angle: float, aspect: float) -> np.ndarray:
    """Boolean mask of a shape of radius ``r`` centred at (cy, cx), rotated by ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)
    if kind == "disk":
        return u**2 + v**2 <= r**2
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85 * r
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.2 * r
    if kind == "ellipse":
        return (u / r) ** 2 + (v / (aspect * r)) ** 2 <= 1.0
    # equilateral triangle: three half-planes at distance r/2 from the centre
    normals = np.array([[np.cos(t), np.sin(t)] for t in (np.pi / 2, 7 * np.pi / 6, 11 * np.pi / 6)])
    return np.all(normals[:, 0, None, None] * u + normals[:, 1, None, None] * v <= 0.55 * r, axis=0)


def _colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A bright random colour at least 0.45 away (L2) from every colour in ``avoid``."""
    for _ in range(100):
        colour = rng.uniform(0.25, 1.0, size=3)
        if all(np.linalg.norm(colour - other) > 0.45 for other in avoid):
            return colour
    return colour


def _random_shape(rng: np.random.Generator, yy, xx, cy, cx, r) -> np.ndarray:
    kind = SHAPES[rng.integers(len(SHAPES))]
    return _shape_mask(kind, yy, xx, cy, cx, r, rng.uniform(0, np.pi), rng.uniform(0.55, 0.8))


def _group(rng: np.random.Generator, kind: str, yy, xx, cy, cx, radius):
    """Shapes (mask, paint order) and instances (mask, kind) of one group."""
    if kind == "single":
        m = _random_shape(rng, yy, xx, cy, cx, radius)
        return [m], [(m, "single")]
    if kind == "concentric":
        shapes = [_random_shape(rng, yy, xx, cy, cx, radius)]
        for scale in LEVELS[1:]:
            r = max(scale * radius, 3.5)
            off = rng.uniform(-0.1, 0.1, size=2) * r
            shapes.append(_random_shape(rng, yy, xx, cy + off[0], cx + off[1], r) & shapes[-1])
        return shapes, [(m, "level") for m in shapes]
    if kind == "nested":
        outer = _random_shape(rng, yy, xx, cy, cx, radius)
        r_in = radius * rng.uniform(0.38, 0.55)
        off = rng.uniform(-0.25, 0.25, size=2) * r_in
        inner = _random_shape(rng, yy, xx, cy + off[0], cx + off[1], r_in) & outer
        return [outer, inner], [(inner, "part"), (outer, "whole")]
    r_a, r_b = radius * rng.uniform(0.6, 0.8), radius * rng.uniform(0.5, 0.7)
    theta = rng.uniform(0, 2 * np.pi)
    dist = 0.75 * (r_a + r_b) * rng.uniform(0.6, 0.9)
    ay, ax = cy - 0.5 * dist * np.sin(theta), cx - 0.5 * dist * np.cos(theta)
    by, bx = cy + 0.5 * dist * np.sin(theta), cx + 0.5 * dist * np.cos(theta)
    a = _random_shape(rng, yy, xx, ay, ax, r_a)
    b = _random_shape(rng, yy, xx, by, bx, r_b)
    return [a, b], [(a & ~b, "object"), (b, "object"), (a | b, "group")]


def make_ambiguous_shapes(n_images: int = 1000, image_size: int = 32, *, seed: int = 0,
                          group_probs: tuple[float, ...] = (0.15, 0.15, 0.45, 0.25),
                          max_groups: int = 1, noise: float = 0.06,
                          progress: bool = True) -> AmbiguousShapes:
    """Draw ``n_images`` scenes of nested / overlapping / single / concentric shapes (seeded).

    ``group_probs`` gives the weights of a nested, an overlapping, a single and a concentric
    group (a fourth weight of 0 is assumed if three are given). Instances smaller than
    ``MIN_AREA`` pixels (an object hidden by the one on top) are dropped.
    """
    n_images = check_int("n_images", n_images)
    image_size = check_int("image_size", image_size, minimum=24)
    max_groups = check_int("max_groups", max_groups)
    seed = check_int("seed", seed, minimum=0)
    noise = check_number("noise", noise, minimum=0.0)
    try:
        probs = np.asarray(group_probs, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"group_probs must be three or four numbers (nested, overlap, single, "
                        f"concentric), got {group_probs!r}.") from err
    if probs.shape == (3,):
        probs = np.append(probs, 0.0)
    if (probs.shape != (4,) or not np.isfinite(probs).all() or (probs < 0).any()
            or probs.sum() <= 0):
        raise ValueError(f"group_probs must be three or four finite non-negative weights "
                         f"(nested, overlap, single, concentric) with a positive sum, got "
                         f"{group_probs}.")
    rng = np.random.default_rng(seed)
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    images = np.empty((n_images, 3, size, size), dtype=np.float32)
    masks, image_index, kinds, groups = [], [], [], []
    group_id = 0
    for n in tqdm(range(n_images), desc="ambiguous shapes", disable=not progress):
        background = rng.uniform(0.0, 0.3, size=3)
        canvas = np.broadcast_to(background[:, None, None], (3, size, size)).copy()
        n_groups = int(rng.integers(1, max_groups + 1))
        placed: list[tuple[float, float, float]] = []
        colours = [background]
        for _ in range(n_groups):
            kind = GROUPS[rng.choice(len(GROUPS), p=probs / probs.sum())]
            radius = size * (rng.uniform(0.26, 0.36) if n_groups == 1 else rng.uniform(0.17, 0.22))
            if kind == "concentric":  # four levels need room: the innermost stays ~9 px wide
                radius *= 1.25
            for _attempt in range(50):
                cy, cx = rng.uniform(radius + 1, size - radius - 1, size=2)
                if all(np.hypot(cy - py, cx - px) > 1.05 * (radius + pr) for py, px, pr in placed):
                    break
            else:
                continue
            placed.append((cy, cx, radius))
            shapes, instances = _group(rng, kind, yy, xx, cy, cx, radius)
            for shape in shapes:
                colour = _colour(rng, colours)
                colours.append(colour)
                texture = 1.0 + 0.15 * rng.standard_normal((size, size))
                canvas = np.where(shape[None], colour[:, None, None] * texture[None], canvas)
            for mask, name in instances:
                if mask.sum() >= MIN_AREA:
                    masks.append(mask)
                    image_index.append(n)
                    kinds.append(KINDS.index(name))
                    groups.append(group_id)
            group_id += 1
        canvas += noise * rng.standard_normal(canvas.shape)
        images[n] = np.clip(canvas, 0.0, 1.0)
    return AmbiguousShapes(
        images=torch.from_numpy(images),
        masks=torch.from_numpy(np.stack(masks)),
        image_index=torch.tensor(image_index, dtype=torch.long),
        kind=torch.tensor(kinds, dtype=torch.long),
        group=torch.tensor(groups, dtype=torch.long),
    )
