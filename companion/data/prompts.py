"""Click prompts as UncertainSAM samples them: a centre click and a dense set of foreground clicks.

The centre click c is the foreground pixel of the mask eroded by a 5×5 square that lies nearest to
the mask's centroid (the mask itself if erosion empties it). The dense prompt x_P* is c plus
``n_points - 1`` further foreground pixels drawn at random without replacement. Clicks are
``(x, y)`` pixel coordinates, SAM's convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage


@dataclass(frozen=True)
class Prompts:
    """Clicks per instance: ``points[:, 0]`` is the centre click c, ``points`` the dense prompt."""

    points: torch.Tensor  # (M, n_points, 2) float (x, y)

    @property
    def centre(self) -> torch.Tensor:
        """The single centre click per instance, shape (M, 1, 2)."""
        return self.points[:, :1]

    @property
    def dense(self) -> torch.Tensor:
        """The dense prompt x_P* per instance, shape (M, n_points, 2)."""
        return self.points

    def single(self, j: int) -> torch.Tensor:
        """The ``j``-th click alone as a one-point prompt, shape (M, 1, 2) (the set S of H_XP)."""
        return self.points[:, j:j + 1]

    def __len__(self) -> int:
        return int(self.points.shape[0])


def _check_masks(masks) -> np.ndarray:
    masks = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks).astype(bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (H, W) or (M, H, W), got {masks.shape}.")
    empty = np.flatnonzero(masks.reshape(len(masks), -1).sum(1) == 0)
    if len(empty):
        raise ValueError(f"{len(empty)} mask(s) are empty (first at index {empty[0]}): a click "
                         "needs at least one foreground pixel; drop empty instances first.")
    return masks


def centre_click(masks, erosion: int = 5) -> torch.Tensor:
    """The centre click c of each mask, shape (M, 2) as (x, y)."""
    masks = _check_masks(masks)
    structure = np.zeros((1, erosion, erosion), dtype=bool)
    structure[0] = True
    eroded = ndimage.binary_erosion(masks, structure=structure)
    eroded = np.where(eroded.reshape(len(masks), -1).any(1)[:, None, None], eroded, masks)
    h, w = masks.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    area = masks.sum((1, 2))
    cy = (masks * yy).sum((1, 2)) / area
    cx = (masks * xx).sum((1, 2)) / area
    dist = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    flat = np.where(eroded, dist, np.inf).reshape(len(masks), -1).argmin(1)
    return torch.from_numpy(np.stack([flat % w, flat // w], axis=1).astype(np.float32))


def sample_prompts(masks, n_points: int = 8, *, seed: int = 0, erosion: int = 5) -> Prompts:
    """Centre click plus ``n_points - 1`` random foreground clicks per mask (seeded).

    A mask with fewer foreground pixels than ``n_points`` repeats its pixels.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be at least 1, got {n_points}.")
    masks = _check_masks(masks)
    centre = centre_click(masks, erosion).numpy()
    rng = np.random.default_rng(seed)
    w = masks.shape[2]
    points = np.empty((len(masks), n_points, 2), dtype=np.float32)
    points[:, 0] = centre
    for i, mask in enumerate(masks if n_points > 1 else []):
        c = int(centre[i, 1]) * w + int(centre[i, 0])
        fg = np.flatnonzero(mask)
        fg = fg[fg != c] if len(fg) > 1 else fg
        pick = rng.choice(fg, size=n_points - 1, replace=len(fg) < n_points - 1)
        points[i, 1:, 0], points[i, 1:, 1] = pick % w, pick // w
    return Prompts(torch.from_numpy(points))
