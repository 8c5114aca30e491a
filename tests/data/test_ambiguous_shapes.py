"""Ambiguous shapes: reproducible scenes whose instances nest and overlap as promised."""

import pytest
import torch

from companion.data.ambiguous_shapes import KINDS, MIN_AREA, make_ambiguous_shapes
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
