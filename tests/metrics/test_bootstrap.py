"""Bootstrap intervals and AP recomputed from stored matches."""

import numpy as np
import pytest
import torch

from companion.metrics.bootstrap import bootstrap_interval
from companion.metrics.segmentation import mask_ap, video_ap


def test_interval_of_a_mean_covers_it_and_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    a = bootstrap_interval(lambda i: small[i].mean(), len(small))
    b = bootstrap_interval(lambda i: large[i].mean(), len(large), n_boot=200)
    assert a.low < small.mean() < a.high and a.estimate == pytest.approx(small.mean())
    assert b.high - b.low < (a.high - a.low) / 5
    # the normal approximation: a 95 % interval is about ±1.96 standard errors
    se = large.std() / np.sqrt(len(large))
    assert (b.high - b.low) == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_groups_are_drawn_whole():
    # two groups, each constant inside: every resample is a mix of whole groups
    values = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    seen = set()

    def stat(items):
        seen.add(len(items))
        return values[items].mean()

    iv = bootstrap_interval(stat, [7, 7, 7, 9, 9, 9], n_boot=200)
    assert seen == {6}  # two groups of three drawn each time
    assert iv.low == 0.0 and iv.high == 1.0 and iv.estimate == 0.5


def test_constant_statistic_has_a_point_interval():
    iv = bootstrap_interval(lambda i: 3.0, 5)
    assert (iv.low, iv.high, iv.estimate) == (3.0, 3.0, 3.0)
    assert iv.contains(3.0) and not iv.contains(3.1)
    assert iv.format(".1f") == "[3.0, 3.0]"


def _random_frames(seed, n=12, size=16):
    gen = torch.Generator().manual_seed(seed)
    gt_masks, gt_labels, pm, ps, pl = [], [], [], [], []
    for _ in range(n):
        g = int(torch.randint(1, 4, (1,), generator=gen))
        masks = torch.rand(g, size, size, generator=gen) > 0.6
        gt_masks.append(masks)
        gt_labels.append(torch.randint(0, 2, (g,), generator=gen))
        noisy = masks ^ (torch.rand(g, size, size, generator=gen) > 0.8)
        extra = torch.rand(1, size, size, generator=gen) > 0.5
        pm.append(torch.cat([noisy, extra]))
        ps.append(torch.rand(g + 1, generator=gen))
        pl.append(torch.randint(0, 2, (g + 1,), generator=gen))
    return pm, ps, pl, gt_masks, gt_labels


def test_resampled_ap_on_all_items_equals_pycocotools():
    pm, ps, pl, gm, gl = _random_frames(0)
    full = mask_ap(pm, ps, pl, gm, gl)
    again = full.resampled(np.arange(len(pm)))
    assert again.ap == pytest.approx(full.ap, abs=1e-12)
    assert again.ap50 == pytest.approx(full.ap50, abs=1e-12)
    assert again.ap75 == pytest.approx(full.ap75, abs=1e-12)
    # a subset gives what pycocotools gives on that subset
    sub = [1, 4, 5, 9]
    direct = mask_ap(*([x[i] for i in sub] for x in (pm, ps, pl, gm, gl)))
    assert full.resampled(sub).ap == pytest.approx(direct.ap, abs=1e-12)
    assert full.resampled(sub).n_objects == direct.n_objects


def test_resampled_video_ap_matches_a_subset():
    pm, ps, pl, gm, gl = _random_frames(1, n=8)
    clips = [(torch.stack([pm[i], pm[i]]), ps[i], pl[i], torch.stack([gm[i], gm[i]]), gl[i])
             for i in range(8)]
    full = video_ap(*zip(*clips, strict=True))
    sub = [0, 2, 3, 7]
    direct = video_ap(*zip(*[clips[i] for i in sub], strict=True))
    assert full.resampled(np.arange(8)).ap == pytest.approx(full.ap, abs=1e-12)
    assert full.resampled(sub).ap == pytest.approx(direct.ap, abs=1e-12)
