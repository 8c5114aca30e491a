"""Plausibility: a hand-computed example, the mask recipe, the zero-evidence rule and bad input."""

import numpy as np
import pytest
import torch

from companion.metrics.bootstrap import mean_interval
from companion.metrics.plausibility import (
    evidence_maps,
    patch_masks,
    plausibility,
)


def test_hand_computed_example():
    # one image, two features on a 3x3 grid; class 1 uses both with weights 1 and 2
    m0 = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0]])
    m1 = torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 3]])
    maps = torch.stack([m0, m1])[None]
    weight = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    # G = m0 + 2 m1 = [[1,0,0],[0,2,0],[0,0,6]], min 0; object = the top-left cell only
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = True
    undilated = plausibility(maps, weight, torch.tensor([1]), mask, on_grid=True, dilate=False)
    assert undilated.mean == pytest.approx(1 / 9)
    # dilated by 3x3: the top-left 2x2 block, holding 1 + 2 of the 9
    dilated = plausibility(maps, weight, torch.tensor([1]), mask, on_grid=True)
    assert dilated.mean == pytest.approx(3 / 9)


def test_evidence_is_shifted_by_its_minimum_and_uses_the_predicted_class():
    maps = torch.tensor([[[[1.0, 2.0]], [[5.0, -1.0]]]])  # (1, 2, 1, 2)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g0 = evidence_maps(maps, weight, torch.tensor([0]))
    g1 = evidence_maps(maps, weight, torch.tensor([1]))
    assert torch.equal(g0, torch.tensor([[[0.0, 1.0]]]))
    assert torch.equal(g1, torch.tensor([[[6.0, 0.0]]]))


def test_flat_evidence_scores_zero_and_stays_in_the_mean():
    maps = torch.ones(2, 1, 4, 4)
    maps[1, 0, 0, 0] = 2.0  # image 1: all evidence in the corner, which is on the object
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    result = plausibility(maps, torch.ones(1, 1), torch.tensor([0, 0]), mask, on_grid=True,
                          dilate=False)
    assert result.per_image.tolist() == [0.0, 1.0] and result.mean == pytest.approx(0.5)


def test_masks_are_resized_bilinearly_then_dilated():
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, 5:7, 5:7] = True  # inside patch (1, 1) of a 4x4 grid of 4-pixel patches
    small = patch_masks(mask, (4, 4), dilate=False)
    assert small.sum() == 1 and small[0, 1, 1]
    big = patch_masks(mask, (4, 4))
    assert big.sum() == 9 and big[0, :3, :3].all()
    # a full-resolution mask gives the same score as its grid version
    maps = torch.rand(1, 3, 4, 4)
    w = torch.rand(2, 3)
    a = plausibility(maps, w, torch.tensor([1]), mask)
    b = plausibility(maps, w, torch.tensor([1]), big, on_grid=True, dilate=False)
    assert a.mean == pytest.approx(b.mean)


def test_scores_lie_in_unit_interval_and_whole_image_mask_scores_one():
    torch.manual_seed(0)
    maps = torch.randn(20, 5, 6, 6)
    w = torch.randint(0, 2, (3, 5)).float()
    pred = torch.randint(0, 3, (20,))
    masks = torch.rand(20, 48, 48) > 0.7
    s = plausibility(maps, w, pred, masks).per_image
    assert ((s >= 0) & (s <= 1 + 1e-6)).all()
    full = plausibility(maps, w, pred, torch.ones(20, 48, 48, dtype=torch.bool)).per_image
    positive = evidence_maps(maps, w, pred).flatten(1).sum(1) > 0
    assert torch.allclose(full[positive], torch.ones(int(positive.sum())))


def test_mean_interval_covers_the_mean_and_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.random(30), rng.random(3000)
    lo, hi = mean_interval(small).bounds
    assert lo < small.mean() < hi
    lo2, hi2 = mean_interval(large).bounds
    assert hi2 - lo2 < (hi - lo) / 3


@pytest.mark.parametrize("masks, kwargs, match", [
    (torch.ones(2, 8, 8), {}, "one .* object mask per image"),
    (torch.ones(1, 8, 12), {}, "do not fit the 4x4 patch grid"),
    (torch.ones(1, 2, 2), {}, "do not fit the 4x4 patch grid"),
    (torch.ones(1, 8, 8), {"on_grid": True}, "must match the 4x4 patch grid"),
])
def test_masks_of_the_wrong_size_are_refused(masks, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plausibility(torch.rand(1, 2, 4, 4), torch.rand(3, 2), torch.tensor([0]), masks, **kwargs)
