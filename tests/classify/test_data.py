"""The data entry point: concept parts with their ground truth, and a reader's own image folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from companion.classify import check_labels, load_data
from companion.data.image_folder import stratified_split

CLASSES = ("cat", "dog", "owl")


def write_folder(root, per_class=5, split=None):
    """PNG images, one folder per class; class c is a solid colour with channel c bright."""
    for c, name in enumerate(CLASSES):
        folder = root / name if split is None else root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((20, 24, 3), 40, np.uint8)
            pixels[..., c] = 200 + i
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_split_by_a_seeded_class_stratified_fraction(tmp_path):
    write_folder(tmp_path, per_class=5)
    data = load_data(tmp_path, image_size=16, test_fraction=0.4, seed=0)
    assert data.class_names == CLASSES and data.n_classes == 3
    assert len(data.train) == 9 and len(data.test) == 6  # 2 of 5 per class in test
    assert torch.bincount(data.test_labels).tolist() == [2, 2, 2]
    image, label = data.test[0]
    assert image.shape == (3, 16, 16) and int(label) == int(data.test_labels[0])
    assert data.class_attributes is None and data.part_map is None  # no ground truth known
    shown = data.images([0, 1])
    assert shown.shape == (2, 3, 16, 16) and 0 <= float(shown.min()) <= float(shown.max()) <= 1
    again = load_data(tmp_path, image_size=16, test_fraction=0.4, seed=0)
    assert again.name == data.name and torch.equal(again.test_labels, data.test_labels)
    other = load_data(tmp_path, image_size=16, test_fraction=0.4, seed=1)
    assert other.name != data.name  # another split is another dataset for the dense cache


def test_image_folder_split_by_folders(tmp_path):
    write_folder(tmp_path, per_class=3, split="train")
    write_folder(tmp_path, per_class=2, split="test")
    data = load_data(tmp_path, image_size=16)
    assert (len(data.train), len(data.eval_train), len(data.test)) == (9, 9, 6)
    assert data.test_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_stratified_split_keeps_a_training_image_in_every_class():
    train, test = stratified_split([0, 0, 0, 1, 2, 2], 0.5, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(6))
    assert set(np.asarray([0, 0, 0, 1, 2, 2])[train]) == {0, 1, 2}
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split([0, 1], 1.0)


def test_concept_parts_come_with_their_ground_truth():
    data = load_data("concept_parts", n_train=60, n_test=30, n_classes=6)
    assert data.n_classes == 6 and len(data.train) == 60 and len(data.test) == 30
    assert data.class_attributes.shape == (6, 16) and data.part_map.shape[0] == 30
    assert data.linkage.shape == (5, 4) and data.superclass.shape == (6,)
    assert torch.equal(data.images([3])[0], data.test[3][0])
    assert load_data("concept_parts", n_train=60, n_test=30, n_classes=6).name == data.name
    assert load_data("concept_parts", n_train=61, n_test=30, n_classes=6).name != data.name


def test_labels_are_validated_once_at_the_entry():
    assert check_labels([0, 1, 1, 2]).tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="integer class indices"):
        check_labels(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        check_labels([0, -1, 1])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        check_labels([0, 1, 2], n_classes=2)
    with pytest.raises(ValueError, match=r"classes \[1\] have no sample"):
        check_labels([0, 2, 2])
    with pytest.raises(TypeError, match="only apply to source='concept_parts'"):
        load_data("cub", n_train=10)


def test_image_folder_with_one_class_or_an_empty_class_folder_is_refused(tmp_path):
    write_folder(tmp_path / "one", per_class=3)
    for name in CLASSES[1:]:
        for f in (tmp_path / "one" / name).iterdir():
            f.unlink()
        (tmp_path / "one" / name).rmdir()
    with pytest.raises(ValueError, match=r"holds 1 class folder.*at least two"):
        load_data(tmp_path / "one", image_size=16)
    write_folder(tmp_path / "empty", per_class=3)
    (tmp_path / "empty" / "zebra").mkdir()
    with pytest.raises(ValueError, match=r"zebra.*Put at least two images in every class folder"):
        load_data(tmp_path / "empty", image_size=16)


def test_image_folder_skips_other_files_and_takes_any_size_and_mode(tmp_path):
    write_folder(tmp_path, per_class=4)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    Image.new("L", (40, 30), 90).save(tmp_path / "dog" / "grey.png")
    Image.new("RGBA", (13, 50), (10, 20, 30, 128)).save(tmp_path / "owl" / "alpha.png")
    Image.new("P", (64, 64)).save(tmp_path / "owl" / "palette.png")
    data = load_data(tmp_path, image_size=16, test_fraction=0.25)
    assert len(data.train) + len(data.test) == 3 * 4 + 3  # the text file is not an image
    shapes = {tuple(data.train[i][0].shape) for i in range(len(data.train))}
    shapes |= {tuple(data.test[i][0].shape) for i in range(len(data.test))}
    assert shapes == {(3, 16, 16)}


def test_generator_options_reach_concept_parts_and_name_the_data():
    sizes = dict(n_train=40, n_test=20, image_size=32)
    plain = load_data("concept_parts", **sizes)
    turned = load_data("concept_parts", rotation=45, **sizes)
    # the same classes and labels; the parts are drawn turned, so the pixels differ
    assert torch.equal(turned.train_labels, plain.train_labels)
    assert not torch.equal(turned.test_images, plain.test_images)
    assert turned.name != plain.name  # another dataset for the dense cache
    again = load_data("concept_parts", rotation=0, **sizes)  # 0 is the default: the same images
    assert torch.equal(again.test_images, plain.test_images)
