"""Tests of the CUB-200-2011 loader on a tiny copy in the real on-disk format."""

import hashlib
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cub_fixture import CLASS_FOLDERS, HEIGHT, N_ATTRIBUTES, N_PARTS, WIDTH, write_tiny_cub
from torchvision.transforms import functional as F

from companion.data import cub as cub_module
from companion.data.cub import CUB200, Resource, cub_splits
from companion.data.transforms import IMAGENET_MEAN, IMAGENET_STD, display_images, image_transforms
from companion.download import DownloadError


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_cub(tmp_path / "data")


def _mean_colour(image):
    return np.asarray(image, np.float32).reshape(-1, 3).mean(0)


@pytest.mark.parametrize("split", ["train", "test"])
def test_split_sizes_labels_and_images(tiny, split):
    data = CUB200(tiny.root, split=split)
    wanted = [i for i in sorted(tiny.paths) if tiny.is_train[i] == (split == "train")]
    assert len(data) == len(wanted) == 6
    assert data.image_ids.tolist() == wanted
    assert data.targets == [tiny.labels[i] - 1 for i in wanted]
    assert data.classes == [f.split(".")[1].replace("_", " ") for f in CLASS_FOLDERS]
    for index, image_id in enumerate(wanted):
        image, label = data[index]
        assert image.size == (WIDTH, HEIGHT) and image.mode == "RGB"
        assert label == tiny.labels[image_id] - 1 and isinstance(label, int)
        # the pixels are the ones written for this id (JPEG keeps a flat colour within a few levels)
        assert np.abs(_mean_colour(image) - tiny.colour[image_id]).max() < 4


def test_parts_attributes_and_boxes(tiny):
    data = CUB200(tiny.root, split="test")
    assert len(data.part_names) == N_PARTS and len(data.attribute_names) == N_ATTRIBUTES
    for index, image_id in enumerate(data.image_ids.tolist()):
        note = data.annotations(index)
        assert note.image_id == image_id and note.label == tiny.labels[image_id] - 1
        np.testing.assert_allclose(note.bbox, tiny.bbox[image_id], atol=1e-5)
        truth = tiny.parts[image_id]
        np.testing.assert_array_equal(note.part_visible, truth[:, 2] > 0)
        np.testing.assert_allclose(note.parts, truth[:, :2], atol=1e-5)
        np.testing.assert_array_equal(note.attributes, tiny.attributes[image_id][:, 0] > 0)
        np.testing.assert_array_equal(note.certainty, tiny.attributes[image_id][:, 1])
        assert note.segmentation is None
    assert data.class_attribute_matrix().shape == (len(CLASS_FOLDERS), N_ATTRIBUTES)


def test_crop_to_bbox_moves_image_parts_and_mask(tiny):
    full = CUB200(tiny.root, split="train", segmentations=True)
    crop = CUB200(tiny.root, split="train", segmentations=True, crop_to_bbox=True)
    for index, image_id in enumerate(crop.image_ids.tolist()):
        x, y, w, h = tiny.bbox[image_id]
        image, _, mask = crop[index]
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        assert image.size == (int(np.ceil(x + w)) - x0, int(np.ceil(y + h)) - y0)
        assert mask.size == image.size
        note, whole = crop.annotations(index), full.annotations(index)
        visible = note.part_visible
        np.testing.assert_allclose(note.parts[visible], whole.parts[visible] - [x0, y0])
        np.testing.assert_allclose(note.bbox[:2], [x - x0, y - y0], atol=1e-5)
        # the written mask is the box: the crop sees (almost) only bird
        assert note.segmentation.mean() > 0.85 and whole.segmentation.mean() < 0.6


def test_segmentations_follow_the_mask_transform(tiny):
    data = CUB200(tiny.root, segmentations=True, transform=F.to_tensor, mask_transform=F.to_tensor)
    image, label, mask = data[0]
    assert image.shape == (3, HEIGHT, WIDTH) and mask.shape == (1, HEIGHT, WIDTH)
    x, y, w, h = tiny.bbox[int(data.image_ids[0])]
    assert mask[0, int(y) + 1, int(x) + 1] == 1.0 and mask[0, 0, 0] == 0.0
    np.testing.assert_allclose(data.annotations(0).segmentation, mask[0].numpy())
    for i in range(len(data)):  # the mask alone, as the item holds it
        assert torch.equal(data.segmentation(i), data[i][2])


def test_transforms_and_loader(tiny):
    data = CUB200(tiny.root, transform=lambda im: F.to_tensor(F.resize(im, [8, 8])),
                  target_transform=lambda y: y + 100)
    x, y = next(iter(torch.utils.data.DataLoader(data, batch_size=6)))
    assert x.shape == (6, 3, 8, 8)
    assert y.tolist() == [t + 100 for t in data.targets]


def test_missing_root_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found or corrupted at .*download=True"):
        CUB200(tmp_path / "nowhere")


def test_unknown_split(tiny):
    with pytest.raises(ValueError, match="split"):
        CUB200(tiny.root, split="val")


@pytest.mark.parametrize("name", ["images.txt", "image_class_labels.txt", "train_test_split.txt",
                                  "bounding_boxes.txt", "classes.txt", "parts/part_locs.txt",
                                  "attributes/image_attribute_labels.txt", "../attributes.txt"])
def test_missing_annotation_file(tiny, name):
    (tiny.root / "CUB_200_2011" / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"corrupted at .*{name.split('/')[-1]}"):
        CUB200(tiny.root)


def _edit(tiny, name, change):
    path = tiny.root / "CUB_200_2011" / name
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


@pytest.mark.parametrize("name, change, words", [
    ("parts/part_locs.txt", lambda lines: lines[:-1], "part_locs.txt has 179 lines, expected 180"),
    ("image_class_labels.txt", lambda lines: lines[:-1], "11 lines, expected 12"),
    ("bounding_boxes.txt", lambda lines: [" ".join(s.split()[:4]) for s in lines], "malformed"),
    ("train_test_split.txt", lambda lines: ["999 1"] + lines[1:], "image id 999"),
    ("train_test_split.txt", lambda lines: [lines[0].split()[0] + " 2"] + lines[1:], "0 and 1"),
    ("image_class_labels.txt", lambda lines: ["1 7"] + lines[1:], "outside 1..3"),
    ("image_class_labels.txt", lambda lines: ["1 2"] + lines[1:], "another class"),
    ("attributes/image_attribute_labels.txt", lambda lines: [lines[1]] + lines[1:], "twice"),
    ("attributes/image_attribute_labels.txt", lambda lines: lines[:100], "lines, expected 3744"),
    ("attributes/image_attribute_labels.txt", lambda lines: ["1 1 x 3 1.0"] + lines[1:],
     "malformed"),
    ("bounding_boxes.txt", lambda lines: ["1 0 0 0 5"] + lines[1:], "zero or negative"),
    ("parts/parts.txt", lambda lines: lines[:-1], "14 parts"),
    ("images.txt", lambda lines: lines + [""] + [lines[0]], "twice"),
    ("classes.txt", lambda lines: ["oops"] + lines[1:], "line 1"),
])
def test_corrupted_annotations_are_named(tiny, name, change, words):
    _edit(tiny, name, change)
    with pytest.raises(RuntimeError, match="Dataset not found or corrupted at") as info:
        CUB200(tiny.root)
    assert words in str(info.value)
    assert "download=True" in str(info.value)


def test_missing_image_and_segmentation(tiny):
    data = CUB200(tiny.root, split="test")
    data.paths[2].unlink()
    with pytest.raises(FileNotFoundError, match="1 images of the test split are missing"):
        CUB200(tiny.root, split="test")
    assert len(CUB200(tiny.root, split="train")) == 6, "the other split is still usable"
    shutil.rmtree(tiny.root / "segmentations" / CLASS_FOLDERS[1])
    with pytest.raises(FileNotFoundError, match="segmentations are missing.*segmentations"):
        CUB200(tiny.root, split="train", segmentations=True)


def test_unreadable_image(tiny):
    data = CUB200(tiny.root)
    data.paths[1].write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(RuntimeError, match=f"corrupted at .*cannot read {data.paths[1].name}"):
        data[1]
    path = data.paths[3]
    path.write_bytes(path.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(RuntimeError, match="cannot read"):
        data[3]


def _tarball(tiny, tmp_path, members, name):
    archive = tmp_path / name
    with tarfile.open(archive, "w:gz") as t:
        for member in members:
            t.add(tiny.root / member, arcname=member)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return Resource(archive.as_uri(), name, digest)


def test_download_fetches_checks_and_unpacks(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(CUB200, "archive", _tarball(
        tiny, tmp_path, ["CUB_200_2011", "attributes.txt"], "CUB_200_2011.tgz"))
    monkeypatch.setattr(CUB200, "segmentation_archive", _tarball(
        tiny, tmp_path, ["segmentations"], "segmentations.tgz"))
    root = tmp_path / "fresh"
    data = CUB200(root, split="test", download=True, segmentations=True)
    assert len(data) == 6 and data[0][2].size == (WIDTH, HEIGHT)
    assert sorted(p.name for p in root.iterdir()) == [
        "CUB_200_2011", "CUB_200_2011.tgz", "attributes.txt", "segmentations",
        "segmentations.tgz"]

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded although the data is there")

    monkeypatch.setattr(cub_module, "download", no_network)
    assert len(CUB200(root, download=True, segmentations=True)) == 6


def test_download_with_a_wrong_checksum_leaves_nothing(tiny, tmp_path, monkeypatch):
    resource = _tarball(tiny, tmp_path, ["CUB_200_2011", "attributes.txt"], "CUB_200_2011.tgz")
    monkeypatch.setattr(CUB200, "archive", Resource(resource.url, resource.filename, "0" * 64))
    root = tmp_path / "fresh"
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        CUB200(root, download=True)
    assert list(root.iterdir()) == []


def test_splits_share_one_setup_and_take_classes_from_the_data(tiny):
    splits = cub_splits(tiny.root, image_size=16, download=False)
    assert splits.classes == [f.split(".")[1].replace("_", " ") for f in CLASS_FOLDERS]
    assert splits.n_classes == len(CLASS_FOLDERS)
    assert (splits.train.split, splits.eval_train.split, splits.test.split) == ("train", "train", "test")
    assert splits.eval_train.image_ids.tolist() == splits.train.image_ids.tolist()
    x, y = splits.test[0]
    assert x.shape == (3, 16, 16) and y == splits.test.targets[0]
    # the plain transform is deterministic and ImageNet-normalised: a flat image stays flat
    image_id = int(splits.test.image_ids[0])
    expected = (np.asarray(tiny.colour[image_id]) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), expected, atol=0.05)
    # the augmented view crops at random: two draws of one image differ somewhere
    torch.manual_seed(0)
    draws = torch.stack([splits.train[1][0] for _ in range(8)])
    assert draws.shape == (8, 3, 16, 16) and (draws - draws[0]).abs().amax() > 0


def test_display_images_undo_the_normalisation(tiny):
    splits = cub_splits(tiny.root, image_size=16, download=False)
    images = display_images(splits.test, [2, 0])
    assert images.shape == (2, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    for row, index in zip(images, [2, 0], strict=True):  # the flat colour of each image comes back
        colour = np.asarray(tiny.colour[int(splits.test.image_ids[index])]) / 255
        np.testing.assert_allclose(row.mean((1, 2)).numpy(), colour, atol=0.02)


def test_splits_default_to_the_cache(tiny, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tiny.root.parent))
    (tiny.root.parent / "cub").symlink_to(tiny.root, target_is_directory=True)
    splits = cub_splits(download=False)
    assert splits.test.root == tiny.root.parent / "cub" and len(splits.test) == 6


@pytest.mark.parametrize("size, resize", [(224, 256), (448, 512), (64, 73)])
def test_transforms_resize_by_eight_sevenths(size, resize):
    augmented, plain = image_transforms(size)
    assert plain.transforms[0].size == resize and plain.transforms[1].size == (size, size)
    assert augmented.transforms[0].size == resize
    assert not any("TrivialAugment" in type(t).__name__ for t in augmented.transforms)
    with_trivial, _ = image_transforms(size, trivial_augment=True)
    assert any("TrivialAugment" in type(t).__name__ for t in with_trivial.transforms)


def test_transforms_reject_bad_sizes():
    with pytest.raises(ValueError, match="image_size must be a positive"):
        image_transforms(0)
    with pytest.raises(ValueError, match=r"resize \(100\) must be at least image_size \(224\)"):
        image_transforms(224, resize=100)


KILLED_UNPACK = textwrap.dedent("""
    import os, signal
    import companion.download as download_module
    from companion.data.cub import CUB200, Resource
    real_replace = os.replace
    def replace_or_die(src, dst):
        if os.path.basename(str(src)) == {entry!r}:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    download_module.os.replace = replace_or_die
    CUB200.archive = Resource({url!r}, {filename!r}, {sha256!r})
    CUB200({root!r}, split="test", download=True)
""")


@pytest.mark.parametrize("entry, left", [
    ("attributes.txt", ["CUB_200_2011"]),             # killed between the two moves
    (".CUB_200_2011.tgz.contents.extracting", []),    # killed at the end of the extraction
])
def test_download_after_a_kill_in_the_middle_of_unpacking(tiny, tmp_path, monkeypatch, entry,
                                                           left):
    resource = _tarball(tiny, tmp_path, ["CUB_200_2011", "attributes.txt"], "CUB_200_2011.tgz")
    root = tmp_path / "fresh"
    code = KILLED_UNPACK.format(entry=entry, url=resource.url, filename=resource.filename,
                                sha256=resource.sha256, root=str(root))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    visible = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert visible == sorted(["CUB_200_2011.tgz", *left])  # the half-unpacked state
    with pytest.raises(FileNotFoundError, match="download=True"):
        CUB200(root, split="test")
    monkeypatch.setattr(CUB200, "archive", resource)
    assert len(CUB200(root, split="test", download=True)) == 6
    assert sorted(p.name for p in root.iterdir()) == [
        "CUB_200_2011", "CUB_200_2011.tgz", "attributes.txt"]  # no marker or staging left


def test_download_repairs_a_copy_half_moved_by_an_older_version(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(CUB200, "archive", _tarball(
        tiny, tmp_path, ["CUB_200_2011", "attributes.txt"], "CUB_200_2011.tgz"))
    root = tmp_path / "fresh"
    CUB200(root, download=True)
    (root / "attributes.txt").unlink()  # no marker: the state the old two-step move left
    with pytest.raises(FileNotFoundError, match="attributes.txt.*download=True"):
        CUB200(root)
    assert len(CUB200(root, download=True)) == 6


PAUSED_UNPACK = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import companion.download as download_module
    from companion.data.cub import CUB200, Resource
    marker = sys.argv[1]
    real_replace, real_extract, extracts = os.replace, download_module.extract, []
    def wait_for(name):
        while not Path(marker + name).exists():
            time.sleep(0.01)
    def replace_with_a_pause(src, dst):
        if os.path.basename(str(src)) == "attributes.txt":  # half-way through the moves
            Path(marker + ".paused").touch()
            wait_for(".go")
        return real_replace(src, dst)
    def counted_extract(*args):
        extracts.append(args)
        return real_extract(*args)
    download_module.os.replace, download_module.extract = replace_with_a_pause, counted_extract
    CUB200.archive = Resource({url!r}, {filename!r}, {sha256!r})
    wait_for(".start")
    print(len(CUB200({root!r}, split="test", download=True)), len(extracts))
""")


def _blocked_on_a_lock(pid):
    # a waiting flock shows as "N: -> FLOCK ADVISORY WRITE <pid> ..."
    with open("/proc/locks") as f:
        return any("->" in line and "FLOCK" in line and f" {pid} " in line for line in f)


def _wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_two_processes_unpacking_at_once_take_turns(tiny, tmp_path):
    resource = _tarball(tiny, tmp_path, ["CUB_200_2011", "attributes.txt"], "CUB_200_2011.tgz")
    root = tmp_path / "fresh"
    root.mkdir()
    shutil.copy(tmp_path / "CUB_200_2011.tgz", root)  # downloaded already: only unpacking is left
    code = PAUSED_UNPACK.format(url=resource.url, filename=resource.filename,
                                sha256=resource.sha256, root=str(root))
    first, second = (subprocess.Popen([sys.executable, "-c", code, str(tmp_path / name)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for name in ("first", "second"))
    (tmp_path / "first.start").touch()
    _wait_for(lambda: (tmp_path / "first.paused").exists())  # the first is half-way through
    (tmp_path / "second.start").touch()
    _wait_for(lambda: _blocked_on_a_lock(second.pid) or second.poll() is not None
              or (tmp_path / "second.paused").exists())
    waited = _blocked_on_a_lock(second.pid)
    for name in ("first.go", "second.go"):
        (tmp_path / name).touch()
    outputs = [child.communicate(timeout=120) for child in (first, second)]
    assert [child.returncode for child in (first, second)] == [0, 0], outputs
    assert waited, "the second process did not wait for the first one's unpacking"
    assert [out.split() for out, _ in outputs] == [["6", "1"], ["6", "0"]]  # extracted once
    assert sorted(p.name for p in root.iterdir()) == [
        "CUB_200_2011", "CUB_200_2011.tgz", "attributes.txt"]
