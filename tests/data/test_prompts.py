"""USAM's prompts: centre click (eroded mask, nearest the centroid) and dense foreground clicks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.data.prompts import centre_click, sample_prompts


def _reference_centre(mask: np.ndarray) -> float:
    """Squared distance from the centroid to the nearest pixel of the 5×5-eroded mask (loops)."""
    h, w = mask.shape
    eroded = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            eroded[y, x] = all(0 <= y + dy < h and 0 <= x + dx < w and mask[y + dy, x + dx]
                               for dy in range(-2, 3) for dx in range(-2, 3))
    if not eroded.any():
        eroded = mask
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    return min((y - cy) ** 2 + (x - cx) ** 2 for y, x in zip(*np.nonzero(eroded), strict=True)), eroded


masks = st.integers(0, 2**31 - 1).map(
    lambda seed: np.random.default_rng(seed).random((12, 14)) < np.random.default_rng(seed + 1)
    .uniform(0.3, 0.95)).filter(lambda m: m.any())


@settings(max_examples=40, deadline=None)
@given(masks)
def test_centre_click_matches_reference(mask):
    (x, y), = centre_click(mask[None]).long().tolist()
    best, eroded = _reference_centre(mask)
    ys, xs = np.nonzero(mask)
    assert eroded[y, x]
    assert (y - ys.mean()) ** 2 + (x - xs.mean()) ** 2 == pytest.approx(best)


def test_centre_click_of_a_disk_is_its_centre():
    yy, xx = np.mgrid[0:21, 0:21]
    disk = (yy - 12) ** 2 + (xx - 7) ** 2 <= 16
    assert centre_click(disk).tolist() == [[7.0, 12.0]]


@settings(max_examples=25, deadline=None)
@given(masks, st.integers(1, 10), st.integers(0, 1000))
def test_sampled_clicks_lie_on_the_mask(mask, n_points, seed):
    p = sample_prompts(mask[None], n_points, seed=seed)
    pts = p.points[0].long()
    assert p.points.shape == (1, n_points, 2)
    assert mask[pts[:, 1], pts[:, 0]].all()
    assert torch.equal(p.centre[0, 0], centre_click(mask[None])[0])
    if mask.sum() > n_points:  # enough pixels: the extra clicks are distinct and avoid c
        keys = (pts[:, 1] * mask.shape[1] + pts[:, 0]).tolist()
        assert len(set(keys)) == n_points


def test_prompt_views_and_seed():
    m = np.zeros((2, 10, 10), bool)
    m[:, 2:8, 3:9] = True
    a, b = sample_prompts(m, 8, seed=1), sample_prompts(m, 8, seed=1)
    assert torch.equal(a.points, b.points)
    assert not torch.equal(a.points, sample_prompts(m, 8, seed=2).points)
    assert a.centre.shape == (2, 1, 2) and a.dense.shape == (2, 8, 2)
    assert torch.equal(a.single(3)[:, 0], a.points[:, 3]) and len(a) == 2


def test_tiny_masks_repeat_pixels():
    m = np.zeros((1, 6, 6), bool)
    m[0, 1, 1] = m[0, 4, 4] = True
    pts = sample_prompts(m, 5).points[0].long()
    assert m[0, pts[:, 1], pts[:, 0]].all()


def test_bad_masks():
    with pytest.raises(ValueError, match="empty"):
        centre_click(np.zeros((2, 5, 5), bool))
    with pytest.raises(ValueError, match="shape"):
        sample_prompts(np.ones((1, 1, 5, 5), bool))
    with pytest.raises(ValueError, match="n_points"):
        sample_prompts(np.ones((5, 5), bool), 0)
