"""Ambiguous shapes: reproducible scenes whose instances nest and overlap as promised."""

import pytest
import torch

from companion.data.ambiguous_shapes import KINDS, MIN_AREA, count_answers, make_ambiguous_shapes
from companion.data.prompts import centre_click


@pytest.fixture(scope="module")
def data():
    return make_ambiguous_shapes(120, seed=3, progress=False)


def test_seeded_and_reproducible(data):
    again = make_ambiguous_shapes(120, seed=3, progress=False)
    assert torch.equal(again.images, data.images) and torch.equal(again.masks, data.masks)
    other = make_ambiguous_shapes(120, seed=4, progress=False)
    assert not torch.equal(other.images, data.images)


def test_shapes_and_ranges(data):
    n, s = len(data.images), data.image_size
    assert data.images.shape == (n, 3, s, s) and data.masks.shape == (len(data), s, s)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert (data.masks.flatten(1).sum(1) >= MIN_AREA).all()
    assert set(data.image_index.tolist()) <= set(range(n))
    assert {"part", "whole", "object", "group"} <= set(data.kind_names())


def test_nesting_and_overlap_invariants(data):
    kinds = data.kind_names()
    for g in data.group.unique().tolist():
        idx = (data.group == g).nonzero()[:, 0].tolist()
        members = {kinds[i]: [data.masks[j] for j in idx if kinds[j] == kinds[i]] for i in idx}
        assert len(set(data.image_index[idx].tolist())) == 1  # a group lives in one image
        if "part" in members:
            part, whole = members["part"][0], members["whole"][0]
            assert (part & ~whole).sum() == 0 and whole.sum() > part.sum()  # the part is inside
        if "group" in members:
            objects = members.get("object", [])
            union = torch.zeros_like(members["group"][0])
            for m in objects:
                union |= m
            assert (union & ~members["group"][0]).sum() == 0  # objects lie in their group
            if len(objects) == 2:
                assert (objects[0] & objects[1]).sum() == 0  # visible parts are disjoint
                assert torch.equal(union, members["group"][0])


def test_centre_click_of_a_whole_lands_on_its_part(data):
    """The ambiguity the chapter needs: the whole's centre click is also a click on the part."""
    kinds = data.kind_names()
    wholes = [i for i, k in enumerate(kinds) if k == "whole"]
    clicks = centre_click(data.masks[wholes]).long()
    hits = 0
    for i, (x, y) in zip(wholes, clicks.tolist(), strict=True):
        part = next(j for j in (data.group == data.group[i]).nonzero()[:, 0].tolist()
                    if kinds[j] == "part")
        hits += bool(data.masks[part, y, x])
    assert hits / len(wholes) >= 0.9


def test_subset_and_dataset(data):
    sub = data.subset([0, 2])
    assert torch.equal(sub.masks[1], data.masks[2])
    image, mask, extra = data.dataset({"n": torch.arange(len(data))})[2]
    assert torch.equal(image, data.images[data.image_index[2]]) and extra == 2
    assert mask.dtype == torch.float32 and torch.equal(mask.bool(), data.masks[2])
    with pytest.raises(ValueError, match="one row per instance"):
        data.dataset({"n": torch.arange(3)})


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_images=0), "n_images"),
    (dict(n_images=2, image_size=16), "image_size"),
    (dict(n_images=2, group_probs=(1.0, -1.0, 0.0)), "group_probs"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_ambiguous_shapes(progress=False, **kwargs)


def test_kind_names_are_known(data):
    assert set(data.kind.tolist()) <= set(range(len(KINDS)))


def test_concentric_levels_nest_and_share_one_centre_click(data):
    """A target's four levels nest strictly, and each level's centre click lies on all of them."""
    kinds = data.kind_names()
    targets = {data.group[i].item() for i, k in enumerate(kinds) if k == "level"}
    assert targets
    for g in targets:
        idx = (data.group == g).nonzero()[:, 0].tolist()
        levels = sorted((data.masks[j] for j in idx), key=lambda m: -int(m.sum()))
        for outer, inner in zip(levels, levels[1:], strict=False):
            assert (inner & ~outer).sum() == 0 and outer.sum() > inner.sum()
        clicks = centre_click(torch.stack(levels)).long()
        for x, y in clicks.tolist():
            assert all(m[y, x] for m in levels)
        assert (data.answers[idx] == len(idx)).all()


def test_answers_count_the_instances_under_the_centre_click(data):
    """The ambiguous flag marks exactly the clicks where another instance differs from this one."""
    clicks = centre_click(data.masks).long()
    for i, (x, y) in enumerate(clicks.tolist()):
        same = (data.image_index == data.image_index[i]).nonzero()[:, 0]
        holders = [j for j in same.tolist() if data.masks[j, y, x]]
        assert i in holders and data.answers[i] == len(holders)
        others = [j for j in holders if j != i]
        assert bool(data.ambiguous[i]) == bool(others)
        for j in others:  # a second answer is a different mask
            assert not torch.equal(data.masks[i], data.masks[j])
    kinds = data.kind_names()
    assert all(data.answers[i] == 1 for i, k in enumerate(kinds) if k == "single")
    assert all(data.ambiguous[i] for i, k in enumerate(kinds) if k in ("part", "level"))


def test_masks_are_binary_and_subsets_keep_their_answers(data):
    assert data.masks.dtype == torch.bool and data.answers.dtype == torch.long
    sub = data.subset([3, 1])
    assert torch.equal(sub.answers, data.answers[[3, 1]])
    rebuilt = type(data)(data.images, data.masks, data.image_index, data.kind, data.group)
    assert torch.equal(rebuilt.answers, data.answers)


def test_three_weights_mean_no_concentric_group():
    three = make_ambiguous_shapes(40, seed=5, group_probs=(1.0, 1.0, 1.0), progress=False)
    assert "level" not in three.kind_names()
    only = make_ambiguous_shapes(10, seed=5, group_probs=(0, 0, 0, 1.0), progress=False)
    assert set(only.kind_names()) == {"level"} and (only.answers >= 3).all()


def test_an_empty_mask_has_no_answers(data):
    masks = data.masks[:3].clone()
    masks[1] = False
    answers = count_answers(masks, data.image_index[:3])
    assert answers[1] == 0 and (answers[[0, 2]] >= 1).all()
