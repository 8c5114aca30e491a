"""Interpretability metrics of a linear decision layer over (feature-map) features.

Definitions follow the SLDD / Q-SENN / QPM papers and their released code; the notation is
features f (N × n_f, the features the layer reads), maps M (N × n_f × h × w), class–feature
matrix W (n_c × n_f) and predicted classes ĉ. Everything runs on CPU or GPU tensors.

Public API
----------
``compactness(weight) -> Compactness``                      features used, per class (k), sparsity
``diversity_at_k(maps, weight, predicted, k=5, scale_invariant=False) -> float``   div@k / Loc5, SID@k
``dependence(features, weight, predicted) -> float``        share of the largest feature contribution
``class_independence(features, labels, num_classes=None) -> float``
``feature_correlation(features) -> float``                  mean over features of max |cos| to another
``attribute_alignment(features, attributes) -> AttributeAlignment``    image-level (Q-SENN, CUB)
``part_alignment(maps, part_map, n_parts) -> PartAlignment``  spatial, needs ground-truth part masks
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AttributeAlignment",
    "Compactness",
    "PartAlignment",
    "attribute_alignment",
    "class_independence",
    "compactness",
    "dependence",
    "diversity_at_k",
    "feature_correlation",
    "part_alignment",
]


def _matrix(x: Tensor, name: str, ndim: int = 2) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != ndim or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty {ndim}-D tensor, got shape {tuple(x.shape)}.")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x.detach()  # a metric reads values: a layer's Parameter must not drag autograd along


def _classes(predicted: Tensor, n: int, n_classes: int, name: str = "predicted") -> Tensor:
    if predicted.shape != (n,) or predicted.is_floating_point():
        raise ValueError(f"{name} must be {n} integer class indices, got shape {tuple(predicted.shape)} "
                         f"and dtype {predicted.dtype}.")
    if len(predicted) and (int(predicted.min()) < 0 or int(predicted.max()) >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got values in "
                         f"[{int(predicted.min())}, {int(predicted.max())}].")
    return predicted.long()


@dataclass(frozen=True)
class Compactness:
    """How few weights a decision uses: n_f used, mean k per class, per-class counts, sparsity."""

    features_used: int
    per_class: float
    per_class_counts: tuple[int, ...]
    sparsity: float  # fraction of zero entries of W


def compactness(weight: Tensor) -> Compactness:
    """Features with any non-zero weight, non-zeros per class (mean k and per class), sparsity."""
    weight = _matrix(weight, "weight")
    nonzero = weight != 0
    counts = nonzero.sum(dim=1)
    return Compactness(features_used=int(nonzero.any(dim=0).sum()),
                       per_class=float(counts.double().mean()),
                       per_class_counts=tuple(int(c) for c in counts),
                       sparsity=1.0 - float(nonzero.double().mean()))


def diversity_at_k(maps: Tensor, weight: Tensor, predicted: Tensor, k: int = 5,
                   scale_invariant: bool = False) -> float:
    """diversity@k (SLDD's Loc5 for k = 5), or SID@k with ``scale_invariant=True`` (QPM).

    For image i, T_k = the k largest non-zero entries of W_ĉi (raw values) and S_if = spatial softmax of
    M_if; div@k = mean_i (1/k) Σ_p max_{f∈T_k} S_if(p) ∈ [1/k, 1]. Images whose predicted class has
    fewer than k non-zero weights are skipped. SID@k divides each map by its mean |M| first.
    """
    maps = _matrix(maps, "maps", ndim=4)
    weight = _matrix(weight, "weight")
    if weight.shape[1] != maps.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} feature columns but maps have {maps.shape[1]} "
                         "channels; pass the maps of exactly the features W reads.")
    predicted = _classes(predicted, maps.shape[0], weight.shape[0])
    if not 1 <= int(k) <= weight.shape[1]:
        raise ValueError(f"k must lie in [1, {weight.shape[1]}] (the number of features), got {k}.")
    rows = weight.to(maps.device)[predicted.to(maps.device)]
    keep = (rows != 0).sum(dim=1) >= k
    if not keep.any():
        raise ValueError(f"No predicted class has {k} non-zero weights; use a smaller k "
                         f"(max non-zeros per class: {int((weight != 0).sum(dim=1).max())}).")
    rows = rows[keep]
    top = rows.masked_fill(rows == 0, -torch.inf).topk(int(k), dim=1).indices  # (N', k), non-zeros only
    chosen = torch.gather(maps[keep].flatten(2).float(), 1,
                          top[:, :, None].expand(-1, -1, maps.shape[2] * maps.shape[3]))
    if scale_invariant:
        chosen = chosen / chosen.abs().mean(dim=2, keepdim=True).clamp_min(1e-5)
    spatial = torch.softmax(chosen, dim=2)
    return float(spatial.amax(dim=1).sum(dim=1).mean() / k)


def dependence(features: Tensor, weight: Tensor, predicted: Tensor) -> float:
    """Dep = mean_i max_f a_if / Σ_f a_if with a_if = |f_if W_ĉi,f| (lower: no single feature dominates)."""
    features = _matrix(features, "features")
    weight = _matrix(weight, "weight")
    if weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} columns but features have {features.shape[1]}.")
    predicted = _classes(predicted, features.shape[0], weight.shape[0])
    contrib = (features * weight.to(features)[predicted.to(features.device)]).abs()
    total = contrib.sum(dim=1)
    ok = total > 0
    if not ok.any():
        raise ValueError("All contributions f_if W_ĉi,f are zero; dependence is undefined.")
    return float((contrib[ok].amax(dim=1) / total[ok]).mean())


def class_independence(features: Tensor, labels: Tensor, num_classes: int | None = None) -> float:
    """CI = 1 − mean_j max_c p_cj, p_cj = share of feature j's (min-shifted) activation on class c."""
    features = _matrix(features, "features")
    n_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    labels = _classes(labels, features.shape[0], n_classes, "labels").to(features.device)
    shifted = (features - features.amin(dim=0)).double()
    per_class = torch.zeros(n_classes, features.shape[1], dtype=torch.float64, device=features.device)
    per_class.index_add_(0, labels, shifted)
    total = per_class.sum(dim=0)
    ok = total > 0
    if not ok.any():
        raise ValueError("Every feature is constant; class independence is undefined.")
    return float(1 - (per_class[:, ok] / total[ok]).amax(dim=0).mean())


def feature_correlation(features: Tensor) -> float:
    """Corr = mean_j max_{j'≠j} cos(f_:j, f_:j') over the N samples (lower: less redundant)."""
    features = _matrix(features, "features").double()
    if features.shape[1] < 2:
        raise ValueError("feature_correlation needs at least two features.")
    unit = features / features.norm(dim=0).clamp_min(1e-12)
    cos = unit.T @ unit
    cos.fill_diagonal_(-torch.inf)
    return float(cos.amax(dim=1).mean())


@dataclass(frozen=True)
class AttributeAlignment:
    """Image-level alignment: mean score, and per feature its best attribute and score."""

    score: float
    per_feature: Tensor  # (n_f,)
    best_attribute: Tensor  # (n_f,)


def attribute_alignment(features: Tensor, attributes: Tensor) -> AttributeAlignment:
    """Alignment (Q-SENN): mean_j max_a (μ⁺_ja − μ⁻_ja) / mean_i(f_ij − min f_:j).

    μ⁺_ja / μ⁻_ja are the mean of f_:j over images with / without attribute a (``attributes`` is
    an (N × n_a) boolean presence matrix, e.g. ``ConceptParts.part_present``).
    """
    features = _matrix(features, "features").double()
    attributes = _matrix(attributes, "attributes")
    if attributes.shape[0] != features.shape[0]:
        raise ValueError(f"attributes have {attributes.shape[0]} rows but features {features.shape[0]}.")
    present = attributes.bool().to(features.device).double()
    n_pos, n_neg = present.sum(dim=0), (1 - present).sum(dim=0)
    usable = (n_pos > 0) & (n_neg > 0)
    if not usable.any():
        raise ValueError("No attribute is both present and absent in some images; alignment is undefined.")
    mu_pos = (present.T @ features) / n_pos.clamp_min(1)[:, None]  # (n_a, n_f)
    mu_neg = ((1 - present).T @ features) / n_neg.clamp_min(1)[:, None]
    scale = (features - features.amin(dim=0)).mean(dim=0).clamp_min(1e-12)
    gap = (mu_pos - mu_neg) / scale
    gap[~usable] = -torch.inf
    best, which = gap.max(dim=0)
    return AttributeAlignment(float(best.mean()), best.float().cpu(), which.cpu())


@dataclass(frozen=True)
class PartAlignment:
    """Spatial alignment of feature maps with ground-truth part masks.

    ``mass[j, q]``: share of feature j's activation that falls on part q, over the images that
    show q; ``chance[q]``: the share of the image part q covers there (what a map spread evenly
    would score); ``best_part[j]`` = argmax_q of ``mass[j] / chance``; ``score[j]`` = its mass.
    """

    mass: Tensor  # (n_f, P)
    chance: Tensor  # (P,)
    best_part: Tensor  # (n_f,)
    score: Tensor  # (n_f,)

    @property
    def mean_score(self) -> float:
        return float(self.score.mean())


def part_alignment(maps: Tensor, part_map: Tensor, n_parts: int, *, chunk: int = 256) -> PartAlignment:
    """How much of each feature's activation lies on each known part (maps (N, n_f, h, w) ≥ 0,
    ``part_map`` (N, H, W) with 0 = background and 1..P = parts, H and W multiples of h and w)."""
    maps = _matrix(maps, "maps", ndim=4)
    part_map = _matrix(part_map, "part_map", ndim=3)
    if part_map.shape[0] != maps.shape[0]:
        raise ValueError(f"part_map has {part_map.shape[0]} images but maps {maps.shape[0]}.")
    if (maps < 0).any():
        raise ValueError("maps must be non-negative (ReLU feature maps) to be read as activation mass.")
    n, n_f, h, w = maps.shape
    big_h, big_w = part_map.shape[1:]
    if big_h % h or big_w % w:
        raise ValueError(f"part_map size {(big_h, big_w)} must be a multiple of the map size {(h, w)}.")
    if int(part_map.max()) > n_parts or int(part_map.min()) < 0:
        raise ValueError(f"part_map values must lie in [0, {n_parts}] (0 = background).")
    inside = torch.zeros(n_f, n_parts, dtype=torch.float64)
    total = torch.zeros(n_f, n_parts, dtype=torch.float64)
    area = torch.zeros(n_parts, dtype=torch.float64)
    shown = torch.zeros(n_parts, dtype=torch.float64)
    for start in range(0, n, chunk):
        m = maps[start:start + chunk].double().cpu()
        onehot = F.one_hot(part_map[start:start + chunk].long().cpu(), n_parts + 1)[..., 1:]
        cover = F.adaptive_avg_pool2d(onehot.permute(0, 3, 1, 2).double(), (h, w))  # (B, P, h, w)
        present = (cover.flatten(2).sum(dim=2) > 0).double()  # (B, P)
        inside += torch.einsum("bfp,bqp->fq", m.flatten(2), cover.flatten(2))
        total += m.flatten(2).sum(dim=2).T @ present
        area += cover.flatten(2).mean(dim=2).sum(dim=0)
        shown += present.sum(dim=0)
    mass = inside / total.clamp_min(1e-12)
    chance = area / shown.clamp_min(1)
    best = (mass / chance.clamp_min(1e-12)).argmax(dim=1)
    return PartAlignment(mass.float(), chance.float(), best, mass.gather(1, best[:, None]).squeeze(1).float())
