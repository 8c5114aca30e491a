"""Tests of the concept-parts dataset: determinism, ground truth, hierarchy, shortcut, bad input."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.cluster.hierarchy import fcluster

from companion.data.concept_parts import (
    BACKGROUND_CONTRAST,
    BACKGROUND_PATTERNS,
    BACKGROUND_TONES,
    COLOURS,
    MAX_PARTS,
    SHADE,
    ConceptParts,
    make_concept_parts,
    part_vocabulary,
)

N_STYLES = len(BACKGROUND_TONES) * len(BACKGROUND_PATTERNS)


@pytest.fixture(scope="module")
def data() -> ConceptParts:
    return make_concept_parts(300, seed=1)


@pytest.fixture(scope="module")
def clean() -> ConceptParts:
    """No noise, dropout or distractors: every image shows exactly its class's parts."""
    return make_concept_parts(200, seed=2, noise=0.0, dropout=0.0, distractors=0.0)


def test_same_seed_same_data_other_seed_other_data():
    a, b = make_concept_parts(40, seed=3), make_concept_parts(40, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.part_map, b.part_map)
    assert torch.equal(a.labels, b.labels)
    c = make_concept_parts(40, seed=4)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.class_parts, c.class_parts)


def test_train_and_test_share_classes_but_not_images():
    train = make_concept_parts(60, seed=5, split="train")
    test = make_concept_parts(60, seed=5, split="test")
    assert torch.equal(train.class_parts, test.class_parts)
    assert train.class_names == test.class_names and train.part_names == test.part_names
    assert not torch.equal(train.part_map, test.part_map)


def test_shapes_dtypes_and_ranges(data):
    n, p, c = len(data), data.n_parts, data.n_classes
    assert data.images.shape == (n, 3, 64, 64) and data.images.dtype == torch.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert data.part_map.shape == (n, 64, 64) and data.part_map.dtype == torch.uint8
    assert data.class_parts.shape == (c, p) and data.class_parts.dtype == torch.bool
    assert data.part_present.shape == (n, p) and data.superclass.shape == (c,)
    assert c >= 10 and 12 <= p <= 16
    assert len(data.class_names) == c and len(set(data.class_names)) == c
    assert len(set(data.part_names)) == p
    # balanced classes
    counts = torch.bincount(data.labels, minlength=c)
    assert counts.max() - counts.min() <= 1


def test_part_map_lists_exactly_the_present_parts(data):
    for i in range(len(data)):
        drawn = set(np.unique(data.part_map[i].numpy()).tolist()) - {0}
        assert drawn == {p + 1 for p in np.flatnonzero(data.part_present[i].numpy())}


def test_images_show_their_class_parts(clean, data):
    assert torch.equal(clean.part_present, clean.class_parts[clean.labels])
    # with dropout and distractors: at least half of the class's parts, extra parts from elsewhere
    own = data.part_present & data.class_parts[data.labels]
    k = int(data.class_parts.sum(1).max())
    assert own.sum(1).min() >= math.ceil(k / 2)
    assert (own.sum(1) < k).any(), "dropout=0.1 should remove a part somewhere in 300 images"
    assert (data.part_present & ~data.class_parts[data.labels]).any(), "no distractor drawn"


def test_labels_can_be_read_off_the_parts(data):
    """The nearest class (Hamming distance between part sets) is the label for most images."""
    present = data.part_present.float()
    definition = data.class_parts.float()
    distance = torch.cdist(present, definition, p=1)
    accuracy = (distance.argmin(1) == data.labels).float().mean().item()
    assert accuracy >= 0.9


def test_part_pixels_have_the_part_colour_and_texture(clean):
    parts = clean.parts
    images = clean.images[:80].permute(0, 2, 3, 1).numpy()
    part_map = clean.part_map[:80].numpy()
    part_rgb = np.array([COLOURS[q.colour] for q in parts], np.float32)
    for p, part in enumerate(parts):
        pixels = images[part_map == p + 1]
        if len(pixels) == 0:
            continue
        full = np.all(np.abs(pixels - part_rgb[p]) < 1e-6, axis=1)
        shade = np.all(np.abs(pixels - SHADE * part_rgb[p]) < 1e-6, axis=1)
        assert np.all(full | shade), part.name
        expected = {"solid": 0.0, "striped": 0.5, "dotted": 0.25}[part.texture]
        assert abs(shade.mean() - expected) < 0.12, (part.name, shade.mean())
    # background pixels are never mistaken for any part colour
    background = np.unique(images[part_map == 0].round(4), axis=0)
    assert len(background) <= 2 * N_STYLES  # noise-free styles have two values each
    palette = np.concatenate([part_rgb, SHADE * part_rgb])
    nearest = np.abs(background[:, None, :] - palette[None]).max(axis=2).min(axis=1)
    assert nearest.min() > 0.1


def test_background_pixels_follow_the_style(clean):
    images = clean.images.permute(0, 2, 3, 1).numpy()
    tones = np.asarray(BACKGROUND_TONES, np.float32)
    for i in range(0, len(clean), 7):
        tone = tones[int(clean.background[i]) // len(BACKGROUND_PATTERNS)]
        pixels = images[i][clean.part_map[i].numpy() == 0]
        assert np.all(np.abs(pixels - tone) <= BACKGROUND_CONTRAST + 1e-6)


def test_parts_are_single_blobs_separated_by_background(clean):
    for i in range(0, len(clean), 5):
        part_map = clean.part_map[i].numpy()
        for p in np.unique(part_map[part_map > 0]):
            blob = part_map == p
            assert ndimage.label(blob, structure=np.ones((3, 3)))[1] == 1
            halo = ndimage.binary_dilation(blob, structure=np.ones((3, 3))) & ~blob
            assert np.all(part_map[halo] == 0), "parts touch"


def test_shapes_are_told_apart_by_their_area():
    data = make_concept_parts(200, seed=6, noise=0.0, distractors=2.0)
    fill = {}
    part_map = data.part_map.numpy()
    for i in range(len(data)):
        for p in np.unique(part_map[i][part_map[i] > 0]):
            ys, xs = np.nonzero(part_map[i] == p)
            box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            fill.setdefault(data.parts[p - 1].shape, []).append(len(ys) / box)
    mean = {shape: np.mean(v) for shape, v in fill.items()}
    assert mean["square"] > 0.95 and 0.65 < mean["circle"] < 0.85
    assert mean["ring"] < mean["circle"] and mean["triangle"] < 0.6 and mean["cross"] < 0.7


def test_part_masks_match_the_part_map(data):
    one = data.part_masks(3)
    assert one.shape == (data.n_parts, 64, 64) and one.dtype == torch.bool
    batch = data.part_masks(slice(0, 5))
    assert batch.shape == (5, data.n_parts, 64, 64)
    assert torch.equal(batch[3], one)
    assert batch.sum(1).max() <= 1, "parts overlap"
    assert torch.equal(batch.any(1), data.part_map[:5] > 0)
    assert torch.equal(batch.flatten(2).any(2), data.part_present[:5])
    assert torch.equal(data.part_masks([4, 1]), batch[[4, 1]])


def test_shortcut_ties_background_to_class_in_train_only():
    n, strength = 2000, 0.8
    train = make_concept_parts(n, seed=7, shortcut=strength, image_size=32, grid=4)
    test = make_concept_parts(n, seed=7, shortcut=strength, image_size=32, grid=4, split="test")
    plain = make_concept_parts(n, seed=7, image_size=32, grid=4)

    def tied(d):
        return (d.background == d.class_background[d.labels]).float().mean().item()

    def within(rate, p):
        return abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n)

    assert within(tied(train), strength + (1 - strength) / N_STYLES)
    assert within(tied(test), 1 / N_STYLES)
    assert within(tied(plain), 1 / N_STYLES)
    assert len(set(train.class_background.tolist())) == train.n_classes


@pytest.mark.parametrize("n_classes, n_parts, parts_per_class, siblings", [
    (10, 16, 4, 3), (12, 18, 4, 4), (6, 12, 3, 2), (6, 16, 5, 3), (15, 18, 4, 3), (4, 12, 6, 2)])
def test_hierarchy_agrees_with_the_class_part_matrix(n_classes, n_parts, parts_per_class, siblings):
    data = make_concept_parts(4, n_classes=n_classes, n_parts=n_parts,
                              parts_per_class=parts_per_class, siblings=siblings, seed=8)
    _check_hierarchy(data, parts_per_class)
    # siblings differ in at least one and at most parts_per_class - core parts
    matrix = data.class_parts.numpy().astype(int)
    same = data.superclass.numpy()[:, None] == data.superclass.numpy()[None, :]
    differ = parts_per_class - (matrix @ matrix.T)[same & ~np.eye(n_classes, dtype=bool)]
    assert differ.min() >= 1 and differ.max() <= parts_per_class // 2
    assert len(data.superclass_names) == int(data.superclass.max()) + 1


def _check_hierarchy(data: ConceptParts, parts_per_class: int) -> None:
    n_classes = data.n_classes
    matrix = data.class_parts.numpy().astype(int)
    assert np.all(matrix.sum(1) == parts_per_class)
    assert len({tuple(row) for row in matrix}) == n_classes, "two classes with the same parts"
    shared = matrix @ matrix.T
    same = data.superclass.numpy()[:, None] == data.superclass.numpy()[None, :]
    core = math.ceil(parts_per_class / 2)
    off_diagonal = ~np.eye(n_classes, dtype=bool)
    assert np.all(shared[same & off_diagonal] >= core)
    assert np.all(shared[~same] < core)
    n_super = int(data.superclass.max()) + 1
    clusters = fcluster(data.linkage(), n_super, criterion="maxclust")
    assert np.array_equal(clusters[:, None] == clusters[None, :], same)


@settings(max_examples=40, deadline=None)
@given(n_classes=st.integers(2, 24), n_parts=st.integers(2, MAX_PARTS),
       parts_per_class=st.integers(2, 8), siblings=st.integers(1, 6), seed=st.integers(0, 99))
def test_any_class_definition_is_valid_or_refused(n_classes, n_parts, parts_per_class, siblings,
                                                  seed):
    try:
        data = make_concept_parts(1, image_size=32, n_classes=n_classes, n_parts=n_parts,
                                  parts_per_class=parts_per_class, siblings=siblings, seed=seed)
    except ValueError as err:
        assert "Raise n_parts" in str(err)
        n_super = math.ceil(n_classes / siblings)
        pool = n_parts - math.ceil(parts_per_class / 2) * n_super
        assert pool < parts_per_class // 2 or math.comb(pool, parts_per_class // 2) < n_classes
        return
    _check_hierarchy(data, parts_per_class)


def test_part_vocabulary_parts_differ_in_two_attributes():
    parts = part_vocabulary(MAX_PARTS)
    assert len(set(parts)) == MAX_PARTS
    for a, b in itertools.combinations(parts, 2):
        assert (a.shape != b.shape) + (a.colour != b.colour) + (a.texture != b.texture) >= 2


def test_dataset_yields_images_and_labels(data):
    plain = data.dataset()
    assert len(plain) == len(data)
    image, label = plain[7]
    assert torch.equal(image, data.images[7]) and label == data.labels[7]
    flipped, _ = data.dataset(transform=lambda x: x.flip(-1))[7]
    assert torch.equal(flipped, data.images[7].flip(-1))
    x, y = next(iter(torch.utils.data.DataLoader(plain, batch_size=8)))
    assert x.shape == (8, 3, 64, 64) and torch.equal(y, data.labels[:8])


@pytest.mark.parametrize("kwargs, error, words", [
    ({"split": "valid"}, ValueError, "split"),
    ({"n_images": 0}, ValueError, "n_images"),
    ({"n_images": 2.5}, TypeError, "n_images"),
    ({"image_size": -4}, ValueError, "image_size"),
    ({"image_size": 24}, ValueError, "too small"),
    ({"n_classes": 40}, ValueError, "Raise"),
    ({"n_parts": 19}, ValueError, "n_parts"),
    ({"parts_per_class": 20, "n_classes": 2}, ValueError, "grid"),
    ({"shortcut": 1.5}, ValueError, "shortcut"),
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"distractors": -1}, ValueError, "distractors"),
])
def test_bad_input_is_rejected_clearly(kwargs, error, words):
    with pytest.raises(error, match=words):
        make_concept_parts(**{"n_images": 4, **kwargs})


def test_figures_show_the_ground_truth(data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from companion.viz.concept_parts import show_class_parts, show_concept_parts

    fig = show_concept_parts(data, n=6, ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [data.class_names[int(y)] for y in data.labels[:6]]
    for i, ax in enumerate(shown):  # one index label per drawn part
        labels = sorted(int(t.get_text()) for t in ax.texts)
        assert labels == np.flatnonzero(data.part_present[i].numpy()).tolist()
    plt.close(fig)

    fig = show_class_parts(data)
    heat = next(ax for ax in fig.axes if ax.images)
    shown = heat.images[0].get_array().data.astype(bool)
    rows = [data.class_names.index(t.get_text()) for t in heat.get_yticklabels()]
    columns = [data.part_names.index(t.get_text()) for t in heat.get_xticklabels()]
    assert sorted(rows) == list(range(data.n_classes))
    assert np.array_equal(shown, data.class_parts.numpy()[np.ix_(rows, columns)])
    # rows of a superclass are adjacent
    groups = data.superclass.numpy()[rows]
    assert (np.diff(groups) != 0).sum() == len(set(groups.tolist())) - 1
    plt.close(fig)


def test_rotation_turns_the_parts_and_keeps_the_default_unturned():
    from companion.data.concept_parts import _shape_mask

    bar = _shape_mask("bar", 10)
    assert np.array_equal(_shape_mask("bar", 10, 90), bar.T)  # a quarter turn stands it up
    assert np.array_equal(_shape_mask("triangle", 12, 180), _shape_mask("triangle", 12)[::-1, ::-1])
    plain = make_concept_parts(60, image_size=32, seed=2)
    turned = make_concept_parts(60, image_size=32, seed=2, rotation=45)
    assert torch.equal(turned.labels, plain.labels)
    assert torch.equal(turned.part_present, plain.part_present)  # the same parts, turned
    assert not torch.equal(turned.part_map, plain.part_map)
    # every part is still drawn, with the same id
    ids = lambda d: [set(np.unique(m.numpy())) - {0} for m in d.part_map]
    assert ids(turned) == ids(plain)
