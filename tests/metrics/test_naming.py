"""Feature naming by class-level concepts: known answers, the chance level, CUB's part mapping."""

import pytest
import torch

from companion.metrics.naming import (
    CUB_PARTS,
    cub_attribute_parts,
    cub_keypoint_parts,
    keypoint_parts,
    name_features,
    naming_accuracy,
)


def test_a_feature_is_named_by_what_its_positive_classes_share_and_negatives_lack():
    # 3 classes × 4 concepts; feature 0: + for classes 0 and 1 (both have concept 2),
    # feature 1: + class 2, − class 0 (class 2 has concepts 0 and 3, class 0 has 0: → 3)
    concepts = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.float)
    W = torch.tensor([[1.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    names = name_features(W, concepts)
    assert names.concept.tolist() == [2, 3, -1]  # feature 2: no class uses it
    assert names.names(list("abcd")) == ["c", "d", None]
    assert not names.tied[2].any() and names.tied.sum(1).tolist() == [1, 1, 0]


def test_tied_concepts_form_the_name_and_raise_chance_accordingly():
    # one positive class with two concepts: the name is both
    concepts = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float)
    W = torch.tensor([[1.0], [0.0], [0.0]])
    names = name_features(W, concepts)
    assert names.tied[0].tolist() == [True, True, False, False]
    assert names.names(list("abcd")) == ["a / b"]
    acc = naming_accuracy(names.tied, torch.tensor([1]), n_parts=4)
    # right (b is in the name); a random pair of 4 concepts holds the true one with p = 1/2
    assert acc.accuracy == 1.0 and acc.chance == pytest.approx(0.5)


def test_naming_is_invariant_to_the_scale_of_the_ternary_weight():
    gen = torch.Generator().manual_seed(0)
    concepts = (torch.rand(6, 5, generator=gen) > 0.5).float()
    W = torch.randint(-1, 2, (6, 4), generator=gen).float()
    assert torch.equal(name_features(W, concepts).concept, name_features(3.7 * W, concepts).concept)


def test_accuracy_chance_and_interval():
    named = torch.tensor([0, 1, 2, 3, -1, 1])
    fires = torch.tensor([0, 1, 0, 3, 2, -1])  # the last: unknown; the fifth: unnamed
    acc = naming_accuracy(named, fires, n_parts=4, n_boot=500)
    assert acc.n_features == 4 and acc.accuracy == pytest.approx(0.75)
    assert acc.chance == pytest.approx(0.25) and acc.lift == pytest.approx(3.0)
    assert acc.low <= acc.accuracy <= acc.high and acc.low >= 0 and acc.high <= 1
    assert acc.correct.tolist() == [True, True, False, True]


def test_chance_counts_only_the_concepts_with_a_part():
    # 5 concepts: two of part 0, one of part 1, two of no part
    concept_part = torch.tensor([0, 0, 1, -1, -1])
    acc = naming_accuracy(torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0]), concept_part)
    # feature 2 is named by a concept without a part: not counted
    assert acc.n_features == 2 and acc.accuracy == pytest.approx(0.5)
    assert acc.chance == pytest.approx(2 / 3)


def test_a_constant_name_scores_chance_on_average():
    fires = torch.arange(8) % 4
    acc = naming_accuracy(torch.zeros(8, dtype=torch.long), fires, n_parts=4)
    assert acc.accuracy == pytest.approx(acc.chance)


@pytest.mark.parametrize("call, message", [
    (lambda: name_features(torch.ones(3, 2), torch.ones(2, 4)), r"one row per class"),
    (lambda: name_features(torch.ones(3, 2), torch.ones(3, 1)), r"at least two concepts"),
    (lambda: naming_accuracy(torch.tensor([0]), torch.tensor([0, 1]), n_parts=2),
     r"one entry per feature"),
    (lambda: naming_accuracy(torch.tensor([5]), torch.tensor([0]), n_parts=2),
     r"named must index the 2 concepts"),
    (lambda: naming_accuracy(torch.tensor([-1]), torch.tensor([0]), n_parts=2),
     r"no feature has both a name"),
    (lambda: naming_accuracy(torch.tensor([0]), torch.tensor([0])), r"give n_parts"),
])
def test_naming_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cub_attributes_and_keypoints_map_to_parts():
    names = ["has_bill_shape::dagger", "has_wing_color::blue", "has_upper_tail_color::red",
             "has_size::small_(5_-_9_in)", "has_underparts_color::white", "has_eye_color::black"]
    parts, vocab = cub_attribute_parts(names)
    assert vocab == CUB_PARTS
    assert [vocab[p] if p >= 0 else None for p in parts] == ["beak", "wing", "tail", None,
                                                               "belly", "eye"]
    kp = cub_keypoint_parts(["back", "left wing", "right wing", "left eye", "part 5"])
    assert [CUB_PARTS[p] if p >= 0 else None for p in kp] == ["back", "wing", "wing", "eye",
                                                               None]


def test_keypoint_parts_finds_the_part_under_the_peak():
    # 2 images, 2 features on a 4 × 4 map of a 32-pixel crop; 3 keypoints of parts 0, 1, 2
    maps = torch.zeros(2, 2, 4, 4)
    maps[:, 0, 0, 0] = 1.0  # top-left cell, centre (4, 4)
    maps[:, 1, 3, 3] = 2.0  # bottom-right cell, centre (28, 28)
    keypoints = torch.tensor([[[5.0, 5.0], [27.0, 27.0], [16.0, 16.0]]] * 2)
    visible = torch.ones(2, 3, dtype=torch.bool)
    part = torch.tensor([0, 1, 2])
    assert keypoint_parts(maps, keypoints, visible, 32, part, 3).tolist() == [0, 1]
    # part 1 hidden: the bottom-right peak is nearest the centre keypoint (part 2)
    visible[:, 1] = False
    assert keypoint_parts(maps, keypoints, visible, 32, part, 3).tolist() == [0, 2]
    # a feature that never fires has no part
    maps[:, 1] = 0.0
    assert keypoint_parts(maps, keypoints, visible, 32, part, 3).tolist()[1] == -1
