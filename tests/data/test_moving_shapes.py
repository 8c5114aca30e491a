"""Tests of the moving-shapes video dataset: determinism, ground-truth invariants, bad input."""

import numpy as np
import pytest
import torch

from companion.data.moving_shapes import CLASSES, make_moving_shapes


@pytest.fixture(scope="module")
def data():
    return make_moving_shapes(n_videos=24, n_frames=10, image_size=64, objects=(1, 4), seed=3)


def test_same_seed_same_clips_and_clip_independent_of_count(data):
    again = make_moving_shapes(n_videos=24, n_frames=10, image_size=64, objects=(1, 4), seed=3)
    fewer = make_moving_shapes(n_videos=5, n_frames=10, image_size=64, objects=(1, 4), seed=3)
    assert torch.equal(data.videos, again.videos) and torch.equal(data.masks, again.masks)
    assert torch.equal(data.videos[:5], fewer.videos) and torch.equal(data.labels[:5], fewer.labels)
    other = make_moving_shapes(n_videos=5, n_frames=10, image_size=64, objects=(1, 4), seed=4)
    assert not torch.equal(other.videos, fewer.videos)


def test_visible_masks_are_disjoint_and_empty_slots_stay_empty(data):
    assert data.masks.sum(2).max() <= 1  # a pixel belongs to at most one object (occlusion)
    unused = data.labels < 0
    assert not data.masks.permute(0, 2, 1, 3, 4)[unused].any()
    assert ((data.labels >= -1) & (data.labels < len(CLASSES))).all()


def test_objects_are_painted_with_their_own_colour(data):
    # Inside one object's visible mask the colour is nearly constant: its spread is far below
    # the spread of the whole frame, so the masks really mark the painted shapes.
    v, t = 0, 0
    frame = data.videos[v, t].float()
    for k in range(data.masks.shape[2]):
        m = data.masks[v, t, k]
        if m.sum() > 20:
            assert frame[:, m].std(1).max() < 0.5 * frame.flatten(1).std(1).max()


def test_clips_show_motion_occlusion_and_objects_entering_or_leaving(data):
    m = data.masks.flatten(3)
    area = m.sum(-1).float()                                     # (V, T, K)
    present = area > 0
    used = data.labels >= 0
    # Entering or leaving: an object slot in use is visible in some frames and not in others.
    changes = (present.any(1) & ~present.all(1) & used).sum()
    assert changes > 0
    # Motion: the centre of visible objects moves between the first and last frame.
    ys = torch.arange(64).repeat_interleave(64).float()
    centre = (m.float() * ys).sum(-1) / area.clamp(min=1)
    both = present[:, 0] & present[:, -1]
    assert (centre[:, 0] - centre[:, -1]).abs()[both].mean() > 2.0
    # Occlusion: some object loses more than 30 % of its largest visible area in some frame.
    shrink = (area / area.amax(1, keepdim=True).clamp(min=1))[present]
    assert (shrink < 0.7).any()


def test_empty_clips_and_single_frames_are_allowed():
    empty = make_moving_shapes(n_videos=2, n_frames=3, image_size=32, objects=(0, 0))
    assert not empty.masks.any() and (empty.labels == -1).all()
    one = make_moving_shapes(n_videos=2, n_frames=1, image_size=32)
    assert one.clip(0)["frames"].shape == (1, 3, 32, 32)


def test_frame_and_chain_datasets(data):
    frames = data.frames()
    assert len(frames) == 24 * 10
    item = frames[13]
    assert torch.equal(item["masks"], data.masks[1, 3])
    assert torch.allclose(item["image"], data.videos[1, 3].float() / 255)
    chains = data.chains(length=3, frame_range=3, per_clip=4, seed=1)
    assert len(chains) == 24 * 4
    for _, ts in chains.index:
        steps = np.diff(ts)
        assert (steps >= 1).all() and (steps <= 3).all() and ts[-1] < 10


@pytest.mark.parametrize("kwargs, message", [
    ({"n_frames": 0}, "n_frames must be >= 1"),
    ({"objects": (3, 2)}, "objects"),
    ({"objects": (1, 6)}, "max_objects"),
    ({"n_classes": 9}, "n_classes"),
    ({"image_size": 8}, "image_size"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_moving_shapes(n_videos=1, **kwargs)


def test_chains_need_two_frames_and_long_enough_clips():
    data = make_moving_shapes(n_videos=1, n_frames=2, image_size=32)
    with pytest.raises(ValueError, match="at least 2 frames"):
        data.chains(length=1)
    with pytest.raises(ValueError, match="longer"):
        data.chains(length=3)
