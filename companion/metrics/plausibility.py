"""Plausibility (DINO-QPM): how much of a decision's evidence lies on the object.

For image i with predicted class ĉ, the class evidence map is G_i = Σ_f W_ĉf · M_if over the
features the class uses, shifted so that its minimum is 0. With the object mask m_i on the
patch grid (resized bilinearly, thresholded at > 0, dilated once by a 3×3 square),

    Plausibility = mean_i Σ_p G_i(p) m_i(p) / Σ_p G_i(p),

where an image whose G_i is zero everywhere scores 0 and stays in the mean (as the official
code does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .bootstrap import mean_interval

__all__ = ["Plausibility", "evidence_maps", "patch_masks", "plausibility"]


def patch_masks(masks: Tensor, grid: tuple[int, int], dilate: bool = True) -> Tensor:
    """Object masks (N, H, W) on the (h, w) patch grid: bilinear resize, > 0, one 3×3 dilation."""
    if not isinstance(masks, Tensor) or masks.ndim != 3 or 0 in masks.shape:
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a (N, H, W) tensor of object masks, got {shape}.")
    h, w = (int(v) for v in grid)
    small = F.interpolate(masks[:, None].float(), size=(h, w), mode="bilinear",
                          align_corners=False)
    return _dilate(small[:, 0] > 0) if dilate else small[:, 0] > 0


def _dilate(grid: Tensor) -> Tensor:
    """One dilation of boolean masks (N, h, w) by a 3×3 square (a 3×3 max-pool)."""
    return F.max_pool2d(grid[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0


def evidence_maps(maps: Tensor, weight: Tensor, predicted: Tensor) -> Tensor:
    """G (N, h, w): Σ_f W_ĉf · M_f for each image's predicted class ĉ, minus its minimum."""
    if maps.ndim != 4 or weight.ndim != 2 or weight.shape[1] != maps.shape[1]:
        raise ValueError(f"maps must be (N, n_f, h, w) and weight (n_c, n_f); got "
                         f"{tuple(maps.shape)} and {tuple(weight.shape)}.")
    predicted = torch.as_tensor(predicted).long()
    if predicted.shape != (maps.shape[0],):
        raise ValueError(f"predicted must hold one class per image ({maps.shape[0]}), got shape "
                         f"{tuple(predicted.shape)}.")
    g = torch.einsum("nf,nfhw->nhw", weight.detach()[predicted].to(maps.dtype), maps.detach())
    return g - g.flatten(1).amin(1)[:, None, None]


@dataclass(frozen=True)
class Plausibility:
    """Per-image scores and their mean; ``interval()`` gives a bootstrap interval of the mean."""

    per_image: Tensor

    @property
    def mean(self) -> float:
        return float(self.per_image.mean())

    def interval(self, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
        return mean_interval(self.per_image.numpy(), level=level, seed=seed).bounds


def plausibility(maps: Tensor, weight: Tensor, predicted: Tensor, masks: Tensor, *,
                 on_grid: bool = False, dilate: bool = True) -> Plausibility:
    """DINO-QPM's Plausibility of the class evidence maps against object masks.

    ``maps`` (N, n_f, h, w) are the feature maps the class–feature matrix ``weight`` (n_c × n_f)
    reads, ``predicted`` the predicted classes, ``masks`` the object masks: (N, H, W) at image
    resolution (resized to the grid here), or already on the (h, w) grid with ``on_grid=True``.
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, n_f, h, w), got shape {tuple(maps.shape)}.")
    n, _, h, w = maps.shape
    masks = torch.as_tensor(masks)
    if masks.ndim != 3 or masks.shape[0] != n:
        raise ValueError(f"masks must be one (H, W) object mask per image, ({n}, H, W); got shape "
                         f"{tuple(masks.shape)}.")
    if on_grid:
        if masks.shape[1:] != (h, w):
            raise ValueError(f"on_grid masks must match the {h}x{w} patch grid of the maps, got "
                             f"{tuple(masks.shape[1:])}; pass image-size masks without on_grid.")
        grid = _dilate(masks.bool()) if dilate else masks.bool()
    else:
        big_h, big_w = masks.shape[1:]
        if big_h < h or big_w < w or big_h * w != big_w * h:
            raise ValueError(f"masks of size {big_h}x{big_w} do not fit the {h}x{w} patch grid "
                             "(they must be at least as large, with the same aspect ratio): pass "
                             "the masks of the images the maps were computed on.")
        grid = patch_masks(masks, (h, w), dilate=dilate)
    g = evidence_maps(maps.double(), weight.double(), predicted)
    total = g.flatten(1).sum(1)
    inside = (g * grid).flatten(1).sum(1)
    scores = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.zeros_like(total))
    return Plausibility(scores.float())
