"""Tests of frame mask AP (pycocotools) and video AP with spatio-temporal IoU."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.metrics.segmentation import mask_ap, mask_iou, video_ap


def _random_frames(seed, n_frames=3, size=12):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_frames):
        g = int(rng.integers(1, 4))
        gm = rng.random((g, size, size)) > 0.6
        gm[:, 0, 0] = True                       # never empty
        gl = rng.integers(0, 2, g)
        p = int(rng.integers(0, 4))
        pm = rng.random((p, size, size)) > 0.6
        pm[:, 0, 0] = True
        preds.append((pm, rng.random(p), rng.integers(0, 2, p)))
        gts.append((gm, gl))
    return preds, gts


def test_perfect_and_wrong_class_predictions():
    preds, gts = _random_frames(0)
    gm, gl = [g[0] for g in gts], [g[1] for g in gts]
    perfect = mask_ap(gm, [np.ones(len(lab)) for lab in gl], gl, gm, gl)
    assert perfect.ap == pytest.approx(1.0) and perfect.n_objects == sum(len(lab) for lab in gl)
    wrong = mask_ap(gm, [np.ones(len(lab)) for lab in gl], [lab + 5 for lab in gl], gm, gl)
    assert wrong.ap == pytest.approx(0.0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_video_ap_of_one_frame_clips_equals_frame_ap(seed):
    preds, gts = _random_frames(seed, n_frames=4)
    frame = mask_ap([p[0] for p in preds], [p[1] for p in preds], [p[2] for p in preds],
                    [g[0] for g in gts], [g[1] for g in gts])
    video = video_ap([p[0][None] for p in preds], [p[1] for p in preds], [p[2] for p in preds],
                     [g[0][None] for g in gts], [g[1] for g in gts])
    assert video.ap == pytest.approx(frame.ap, abs=1e-9)
    assert video.ap50 == pytest.approx(frame.ap50, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_single_track_ap50_follows_the_spatio_temporal_iou(seed):
    rng = np.random.default_rng(seed)
    gt = rng.random((3, 1, 8, 8)) > 0.5
    gt[0, 0, 0, 0] = True
    pred = gt ^ (rng.random(gt.shape) > 0.7)
    inter, union = (pred & gt).sum(), (pred | gt).sum()
    result = video_ap([pred], [np.array([0.9])], [np.array([0])], [gt], [np.array([0])])
    assert result.ap50 == pytest.approx(1.0 if inter / union >= 0.5 else 0.0)


def test_no_objects_gives_nan_and_mismatched_inputs_raise():
    empty = np.zeros((0, 8, 8), bool)
    result = mask_ap([empty], [np.zeros(0)], [np.zeros(0)], [empty], [np.zeros(0)])
    assert np.isnan(result.ap) and result.n_objects == 0
    with pytest.raises(ValueError, match="same items"):
        mask_ap([empty], [], [], [empty], [np.zeros(0)])
    with pytest.raises(ValueError, match="same T"):
        video_ap([np.zeros((2, 1, 8, 8), bool)], [np.ones(1)], [np.zeros(1)],
                 [np.ones((3, 1, 8, 8), bool)], [np.zeros(1)])


def test_mask_iou_reference():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 8, 8)
    target = torch.rand(4, 1, 8, 8) > 0.5
    iou = mask_iou(logits > 0, target)
    for b in range(4):
        for j in range(3):
            a, t = logits[b, j] > 0, target[b, 0]
            assert iou[b, j].item() == pytest.approx(((a & t).sum() / (a | t).sum()).item())
    assert mask_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0
