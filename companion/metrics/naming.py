"""Features named by concepts without extra supervision, and how often the name is right.

A feature of a sparse (or ternary) last layer is assigned to a few classes, positively or
negatively. Knowing only which concepts each *class* has (a class–concept matrix: the class–part
matrix of the synthetic birds, CUB's class-level attribute table), a feature is named by the
concept its positive classes have more than the average class and its negative classes less:

    s_ja = Σ_c W_cj (a_ca − ā_a) / Σ_c |W_cj|,   name_j = argmax_a s_ja.

Whether the name is right is then checked against what the feature really fires on (part masks,
or CUB's part locations), with the chance level of a name drawn at random from the vocabulary
and a bootstrap interval over features.

Public API
----------
``name_features(weight, class_concepts) -> FeatureNames``
``naming_accuracy(named, fires_on, concept_part=None, n_parts=None, ...) -> NamingAccuracy``
``cub_attribute_parts(attribute_names) -> (part of each attribute or −1, part names)``
``cub_keypoints(dataset, image_size, resize=None) -> (keypoints, visible)`` in the crop's frame
``cub_keypoint_parts(part_names) -> Tensor``   the part of each of CUB's 15 locations
``keypoint_parts(maps, keypoints, visible, image_size, part_of_keypoint, n_parts) -> Tensor``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["CUB_PARTS", "FeatureNames", "NamingAccuracy", "cub_attribute_parts", "cub_keypoint_parts",
           "cub_keypoints", "keypoint_parts", "name_features", "naming_accuracy"]


@dataclass(frozen=True)
class FeatureNames:
    """Per feature: the concept it is named by (−1: no class uses it) and the score matrix."""

    concept: Tensor  # (n_f,) int64
    score: Tensor  # (n_f, n_concepts): s_ja
    runner_up: Tensor  # (n_f,) the second best concept (−1 where unnamed)

    def names(self, concept_names: Sequence[str]) -> list[str | None]:
        """The names as text (None for a feature no class uses)."""
        if len(concept_names) != self.score.shape[1]:
            raise ValueError(f"need {self.score.shape[1]} concept names, got {len(concept_names)}.")
        return [None if int(a) < 0 else concept_names[int(a)] for a in self.concept]


def name_features(weight: Tensor, class_concepts: Tensor) -> FeatureNames:
    """Name every feature (column of W) by the concepts of the classes it is assigned to.

    Uses class-level knowledge only: ``class_concepts`` is (n_c × n_concepts), e.g. 0/1 parts or
    CUB's percentages. Positive weights count a class's concepts for the feature, negative ones
    against it, in proportion to |w| (for a ternary W: every assigned class equally). Ties go to
    the concept listed first.
    """
    weight = torch.as_tensor(weight).double()
    concepts = torch.as_tensor(class_concepts).double()
    if weight.ndim != 2 or concepts.ndim != 2 or weight.shape[0] != concepts.shape[0]:
        raise ValueError(f"weight (n_c × n_f) and class_concepts (n_c × n_concepts) need one row "
                         f"per class, got {tuple(weight.shape)} and {tuple(concepts.shape)}.")
    if concepts.shape[1] < 2:
        raise ValueError("class_concepts needs at least two concepts to name features by.")
    if not (torch.isfinite(weight).all() and torch.isfinite(concepts).all()):
        raise ValueError("weight and class_concepts must be finite.")
    centred = concepts - concepts.mean(dim=0)
    mass = weight.abs().sum(dim=0)
    score = (weight.T @ centred) / mass.clamp_min(1e-12)[:, None]
    # ties (up to rounding) go to the lower concept index
    top = torch.argsort(-torch.round(score * 1e9), dim=1, stable=True)[:, :2]
    used = mass > 0
    concept = torch.where(used, top[:, 0], -1)
    runner_up = torch.where(used, top[:, 1], -1)
    score[~used] = 0.0
    return FeatureNames(concept, score.float(), runner_up)


@dataclass(frozen=True)
class NamingAccuracy:
    """How often a feature's name is right, beside chance, with a bootstrap interval."""

    accuracy: float
    chance: float
    low: float  # bootstrap percentile interval of the accuracy
    high: float
    n_features: int  # features named and with a known truth
    correct: Tensor  # (n_features,) bool, one per counted feature

    @property
    def lift(self) -> float:
        """Accuracy over chance (×)."""
        return self.accuracy / self.chance if self.chance > 0 else float("inf")


def naming_accuracy(named: Tensor, fires_on: Tensor, concept_part: Tensor | None = None,
                    n_parts: int | None = None, *, level: float = 0.95, n_boot: int = 2000,
                    seed: int = 0) -> NamingAccuracy:
    """Share of named features whose name's part is the part the feature fires on.

    ``named`` (n_f,) concept indices (−1: unnamed), ``fires_on`` (n_f,) part indices (−1:
    unknown); ``concept_part`` maps a concept to its part (−1: none; default: concept = part).
    Chance is the share of the vocabulary's concepts (those with a part) naming the right part.
    The interval resamples the counted features ``n_boot`` times.
    """
    named, fires_on = torch.as_tensor(named).long(), torch.as_tensor(fires_on).long()
    if named.ndim != 1 or named.shape != fires_on.shape:
        raise ValueError(f"named and fires_on need one entry per feature, got "
                         f"{tuple(named.shape)} and {tuple(fires_on.shape)}.")
    if concept_part is None:
        if n_parts is None:
            raise ValueError("give n_parts when concepts are the parts themselves.")
        concept_part = torch.arange(int(n_parts))
    concept_part = torch.as_tensor(concept_part).long()
    n_parts = int(concept_part.max()) + 1 if n_parts is None else int(n_parts)
    if int(named.max()) >= len(concept_part) or int(fires_on.max()) >= n_parts:
        raise ValueError(f"named must index the {len(concept_part)} concepts and fires_on the "
                         f"{n_parts} parts.")
    vocabulary = concept_part[concept_part >= 0]
    if len(vocabulary) == 0:
        raise ValueError("no concept belongs to a part: nothing can be checked.")
    counted = (named >= 0) & (fires_on >= 0)
    counted &= concept_part[named.clamp_min(0)] >= 0
    if not counted.any():
        raise ValueError("no feature has both a name with a part and a known part it fires on.")
    correct = concept_part[named[counted]] == fires_on[counted]
    chance = float((vocabulary[None, :] == fires_on[counted][:, None]).double().mean())
    gen = np.random.default_rng(seed)
    hits = correct.numpy().astype(float)
    boot = hits[gen.integers(0, len(hits), size=(int(n_boot), len(hits)))].mean(axis=1)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return NamingAccuracy(float(hits.mean()), chance, float(low), float(high), int(len(hits)),
                          correct)


# CUB-200-2011's 15 part locations, left and right merged: 12 parts an attribute can name
CUB_PARTS = ("back", "beak", "belly", "breast", "crown", "forehead", "eye", "leg", "wing", "nape",
             "tail", "throat")
_KEYPOINT_PART = {"back": "back", "beak": "beak", "belly": "belly", "breast": "breast",
                  "crown": "crown", "forehead": "forehead", "left eye": "eye", "right eye": "eye",
                  "left leg": "leg", "right leg": "leg", "left wing": "wing", "right wing": "wing",
                  "nape": "nape", "tail": "tail", "throat": "throat"}
_ATTRIBUTE_PART = {"bill": "beak", "wing": "wing", "upperparts": "back", "underparts": "belly",
                   "breast": "breast", "back": "back", "tail": "tail", "upper_tail": "tail",
                   "under_tail": "tail", "head": "crown", "throat": "throat", "eye": "eye",
                   "forehead": "forehead", "nape": "nape", "belly": "belly", "leg": "leg",
                   "crown": "crown"}


def cub_attribute_parts(attribute_names: Sequence[str]) -> tuple[Tensor, tuple[str, ...]]:
    """The part (index into ``CUB_PARTS``) each CUB attribute describes, −1 for whole-bird ones.

    ``has_bill_shape::dagger`` → beak, ``has_upper_tail_color::red`` → tail; size, shape and
    primary colour describe no single part.
    """
    out = []
    for name in attribute_names:
        head = str(name).split("::")[0].removeprefix("has_")
        for suffix in ("_color", "_shape", "_pattern", "_length"):
            head = head.removesuffix(suffix)
        part = _ATTRIBUTE_PART.get(head)
        out.append(-1 if part is None else CUB_PARTS.index(part))
    return torch.tensor(out, dtype=torch.long), CUB_PARTS


def cub_keypoints(dataset, image_size: int, resize: int | None = None) -> tuple[Tensor, Tensor]:
    """CUB's 15 part locations of every image of ``dataset`` (a ``CUB200``) in the frame of the
    plain transform's centre crop (resize the shorter side to ``resize``, default image_size·8/7).

    Returns (N, 15, 2) x, y in crop pixels and (N, 15) visibility (False also outside the crop).
    """
    from PIL import Image

    size = int(image_size)
    resize = round(size * 8 / 7) if resize is None else int(resize)
    points = np.zeros((len(dataset), len(dataset.part_names), 2), np.float32)
    visible = np.zeros((len(dataset), len(dataset.part_names)), bool)
    for i, path in enumerate(dataset.paths):
        with Image.open(path) as image:
            width, height = image.size
        if width <= height:
            new_w, new_h = resize, int(resize * height / width)
        else:
            new_w, new_h = int(resize * width / height), resize
        left, top = round((new_w - size) / 2), round((new_h - size) / 2)
        xy = dataset.part_locs[i] * np.array([new_w / width, new_h / height]) - (left, top)
        points[i] = xy
        inside = (xy >= 0).all(1) & (xy < size).all(1)
        visible[i] = dataset.part_visible[i] & inside
    return torch.from_numpy(points), torch.from_numpy(visible)


def cub_keypoint_parts(part_names: Sequence[str]) -> Tensor:
    """The index into ``CUB_PARTS`` of each of CUB's 15 part locations (left/right merged; −1 for
    a name that is not one of CUB's)."""
    return torch.tensor([CUB_PARTS.index(_KEYPOINT_PART[str(n)]) if str(n) in _KEYPOINT_PART
                         else -1 for n in part_names], dtype=torch.long)


def keypoint_parts(maps: Tensor, keypoints: Tensor, visible: Tensor, image_size: int,
                   part_of_keypoint: Tensor, n_parts: int) -> Tensor:
    """The part each feature fires on: the part nearest its map's peak, voted over images.

    Each image votes, with the peak's height, for the part whose visible keypoint lies nearest
    the peak (map cells map to the crop's pixels); a part's votes are divided by how many images
    show it. Returns (n_f,) part indices (−1 where a feature never fires).
    """
    maps = torch.as_tensor(maps).float()
    if maps.ndim != 4 or keypoints.shape[:1] != maps.shape[:1] or visible.shape != \
            keypoints.shape[:2]:
        raise ValueError(f"maps (N, n_f, h, w), keypoints (N, K, 2) and visible (N, K) must share "
                         f"N, got {tuple(maps.shape)}, {tuple(keypoints.shape)}, "
                         f"{tuple(visible.shape)}.")
    part_of_keypoint = torch.as_tensor(part_of_keypoint).long()
    visible = visible.bool() & (part_of_keypoint >= 0)[None, :]
    n, n_f, h, w = maps.shape
    peak, where = maps.flatten(2).max(dim=2)  # (N, n_f)
    centre = torch.stack([(where % w + 0.5) * image_size / w,
                          (where // w + 0.5) * image_size / h], dim=-1)  # (N, n_f, 2) x, y
    dist = (centre[:, :, None, :] - keypoints[:, None, :, :].float()).norm(dim=-1)
    dist = dist.masked_fill(~visible[:, None, :], torch.inf)  # (N, n_f, K)
    nearest = part_of_keypoint[dist.argmin(dim=2)].clamp_min(0)  # (N, n_f)
    any_visible = visible.any(dim=1)[:, None]
    votes = torch.zeros(n_f, n_parts, dtype=torch.float64)
    weight = (peak.clamp_min(0) * any_visible).double()
    votes.scatter_add_(1, nearest.T, weight.T)
    shown = torch.zeros(n_parts, dtype=torch.float64)
    shown.scatter_add_(0, part_of_keypoint[torch.nonzero(visible)[:, 1]],
                       torch.ones(int(visible.sum()), dtype=torch.float64))
    votes = votes / shown.clamp_min(1)
    return torch.where(votes.sum(dim=1) > 0, votes.argmax(dim=1), -1)
