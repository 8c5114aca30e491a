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
from math import comb

import numpy as np
import torch
from torch import Tensor

__all__ = ["CUB_PARTS", "FeatureNames", "NamingAccuracy", "cub_attribute_parts", "cub_keypoint_parts",
           "cub_keypoints", "keypoint_parts", "name_features", "naming_accuracy"]


@dataclass(frozen=True)
class FeatureNames:
    """Per feature: the concept it is named by (−1: no class uses it) and the score matrix."""

    concept: Tensor  # (n_f,) int64, the first of the best-scoring concepts
    score: Tensor  # (n_f, n_concepts): s_ja
    tied: Tensor  # (n_f, n_concepts) bool: the concepts that share the best score (the name)

    def names(self, concept_names: Sequence[str]) -> list[str | None]:
        """The names as text, tied concepts joined by " / " (None for a feature no class uses)."""
        if len(concept_names) != self.score.shape[1]:
            raise ValueError(f"need {self.score.shape[1]} concept names, got {len(concept_names)}.")
        return [None if int(a) < 0 else " / ".join(concept_names[int(i)]
                                                    for i in torch.nonzero(row).flatten())
                for a, row in zip(self.concept, self.tied, strict=True)]


def name_features(weight: Tensor, class_concepts: Tensor) -> FeatureNames:
    """Name every feature (column of W) by the concepts of the classes it is assigned to.

    Uses class-level knowledge only: ``class_concepts`` is (n_c × n_concepts), e.g. 0/1 parts or
    CUB's percentages. Positive weights count a class's concepts for the feature, negative ones
    against it, in proportion to |w| (for a ternary W: every assigned class equally). Where
    several concepts share the best score (a feature of one class with four parts, say), the
    name is all of them (``tied``); ``concept`` holds the first.
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
    rounded = torch.round(score * 1e9)  # ties up to rounding
    used = mass > 0
    tied = (rounded == rounded.max(dim=1, keepdim=True).values) & used[:, None]
    concept = torch.where(used, tied.double().argmax(dim=1), -1)
    score[~used] = 0.0
    return FeatureNames(concept, score.float(), tied)


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
    """Share of named features whose name names the part the feature fires on.

    ``named`` is (n_f,) concept indices (−1: unnamed) or (n_f, n_concepts) bool, a set of
    concepts per feature (``FeatureNames.tied``; empty: unnamed); ``fires_on`` (n_f,) part
    indices (−1: unknown); ``concept_part`` maps a concept to its part (−1: none; default:
    concept = part). A name is right when one of its concepts (with a part) is that part.
    Chance is what a set of as many concepts drawn at random from the vocabulary (the concepts
    with a part) would score. The interval resamples the counted features ``n_boot`` times.
    """
    named, fires_on = torch.as_tensor(named), torch.as_tensor(fires_on).long()
    if concept_part is None:
        if n_parts is None:
            raise ValueError("give n_parts when concepts are the parts themselves.")
        concept_part = torch.arange(int(n_parts))
    concept_part = torch.as_tensor(concept_part).long()
    n_concepts = len(concept_part)
    if named.ndim == 1 and named.dtype != torch.bool:
        if len(named) and int(named.max()) >= n_concepts:
            raise ValueError(f"named must index the {n_concepts} concepts.")
        sets = torch.zeros(len(named), n_concepts, dtype=torch.bool)
        sets[named >= 0, named[named >= 0]] = True
        named = sets
    if named.ndim != 2 or named.shape != (len(fires_on), n_concepts) or fires_on.ndim != 1:
        raise ValueError(f"named and fires_on need one entry per feature (named: one index or "
                         f"a set of the {n_concepts} concepts), got {tuple(named.shape)} and "
                         f"{tuple(fires_on.shape)}.")
    n_parts = int(concept_part.max()) + 1 if n_parts is None else int(n_parts)
    if int(fires_on.max()) >= n_parts:
        raise ValueError(f"fires_on must index the {n_parts} parts.")
    has_part = concept_part >= 0
    if not has_part.any():
        raise ValueError("no concept belongs to a part: nothing can be checked.")
    sets = named.bool() & has_part[None, :]
    size = sets.sum(dim=1)
    counted = (size > 0) & (fires_on >= 0)
    if not counted.any():
        raise ValueError("no feature has both a name with a part and a known part it fires on.")
    sets, size, truth = sets[counted], size[counted], fires_on[counted]
    parts = concept_part.clamp_min(0)
    correct = (sets & (parts[None, :] == truth[:, None])).any(dim=1)
    vocabulary = int(has_part.sum())
    right = ((concept_part[None, :] == truth[:, None]).sum(dim=1))  # concepts of the true part
    chance = float(np.mean([1 - comb(vocabulary - int(r), int(s)) / comb(vocabulary, int(s))
                            for r, s in zip(right, size, strict=True)]))
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
