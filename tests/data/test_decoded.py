"""The decoded-image cache: the same items as decoding every time, reused, rebuilt when files change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cub_fixture import write_tiny_cub
from PIL import Image

from companion.data import decoded as decoded_module
from companion.data.cub import CUB200, cub_splits
from companion.data.decoded import DecodedImages, decoded_images
from companion.io import save_atomic


@pytest.fixture()
def noisy_cub(tmp_path, monkeypatch):
    """The tiny CUB with noise images of several sizes and both orientations (resizing matters)."""
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "cache"))
    tiny = write_tiny_cub(tmp_path / "cub")
    rng = np.random.default_rng(0)
    for k, rel in enumerate(tiny.paths.values()):
        w, h = (41 + 3 * k, 30) if k % 2 else (29, 37 + k)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tiny.root / "CUB_200_2011" / "images" / rel, quality=90)
    return tiny.root


def items(dataset, seed=0):
    out = []
    for i in range(len(dataset)):
        torch.manual_seed(seed + i)  # the augmentations draw from torch's generator
        out.append(dataset[i][0])
    return torch.stack(out)


def test_items_are_those_of_decoding_every_time(noisy_cub):
    kept = cub_splits(noisy_cub, image_size=16, trivial_augment=True, download=False)
    plain = cub_splits(noisy_cub, image_size=16, trivial_augment=True, download=False,
                       keep_decoded=False)
    assert kept.train.decoded is not None and kept.eval_train.decoded is kept.train.decoded
    assert kept.test.decoded is not None and plain.test.decoded is None
    for a, b in ((kept.train, plain.train), (kept.eval_train, plain.eval_train),
                 (kept.test, plain.test)):
        assert torch.equal(items(a), items(b))
    # the training split read once: eval_train has its images and the test transform
    assert kept.eval_train.transform is kept.test.transform is not kept.train.transform
    assert torch.equal(items(kept.eval_train, seed=0), items(kept.eval_train, seed=7))
    # the kept pixels are the resized images: shorter side 16 · 8 / 7 → 18
    shapes = kept.train.decoded.shapes
    assert (shapes.min(dim=1).values == 18).all() and (shapes.max(dim=1).values > 18).all()


def test_a_second_load_reads_the_cache_file_not_the_images(noisy_cub, monkeypatch):
    first = CUB200(noisy_cub, "test")
    assert first.keep_decoded(20)
    files = list((Path(os.environ["COMPANION_CACHE"]) / "images").iterdir())
    assert [f.name.startswith("cub_test_") for f in files] == [True]
    again = CUB200(noisy_cub, "test")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the images were decoded again")

    monkeypatch.setattr(again, "_read", no_decoding)
    assert again.keep_decoded(20)
    assert torch.equal(again.decoded.pixels, first.decoded.pixels)
    assert torch.equal(again.decoded.shapes, first.decoded.shapes)


def test_a_changed_file_or_size_decodes_again(noisy_cub):
    data = CUB200(noisy_cub, "train")
    assert data.keep_decoded(20)
    before = np.asarray(data.decoded[0]).copy()
    # another image under the same name: its size and modification time change
    Image.fromarray(np.full((30, 40, 3), 7, np.uint8)).save(data.paths[0], quality=90)
    st = os.stat(data.paths[0])
    os.utime(data.paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = CUB200(noisy_cub, "train")
    assert changed.keep_decoded(20)
    after = np.asarray(changed.decoded[0])
    assert after.shape == (20, 26, 3) and not np.array_equal(before[:20, :26], after)
    assert np.abs(after.astype(int) - 7).max() <= 2  # the new image, not the cached old one
    other = CUB200(noisy_cub, "train")
    assert other.keep_decoded(24) and other.decoded.shapes.min() == 24
    names = sorted(f.name for f in (Path(os.environ["COMPANION_CACHE"]) / "images").iterdir())
    assert len(names) == 3 and all(n.startswith("cub_train_") for n in names)


def test_the_file_is_written_atomically_and_a_damaged_one_rebuilt(noisy_cub, monkeypatch):
    saved = []

    def recording(obj, path):
        saved.append(Path(path))
        save_atomic(obj, path)

    monkeypatch.setattr(decoded_module, "save_atomic", recording)
    data = CUB200(noisy_cub, "test")
    assert data.keep_decoded(20) and len(saved) == 1
    assert [p.name for p in saved[0].parent.iterdir()] == [saved[0].name]  # no temporary left
    raw = bytearray(saved[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    saved[0].write_bytes(bytes(raw))
    rebuilt = CUB200(noisy_cub, "test")
    with pytest.warns(UserWarning, match="decoded-image cache .* is damaged"):
        assert rebuilt.keep_decoded(20)
    assert len(saved) == 2 and torch.equal(rebuilt.decoded.pixels, data.decoded.pixels)


def test_above_the_limit_nothing_is_kept_and_items_are_unchanged(noisy_cub, monkeypatch):
    data = CUB200(noisy_cub, "test")
    pixels = 3 * 20 * 30 * len(data)  # about what the resized images hold
    assert not data.keep_decoded(20, limit_mb=pixels / 4 / 2**20)
    assert data.decoded is None and not (Path(os.environ["COMPANION_CACHE"]) / "images").exists()
    monkeypatch.setenv("COMPANION_IMAGE_CACHE_MB", "0")  # 0 turns the cache off
    split = cub_splits(noisy_cub, image_size=16, download=False)
    assert split.train.decoded is None and split.test.decoded is None
    assert split.test[0][0].shape == (3, 16, 16)


def test_decoded_images_checks_its_pieces():
    images = DecodedImages(torch.arange(2 * 3 * 3 + 1 * 2 * 3, dtype=torch.uint8),
                           torch.tensor([[2, 3], [1, 2]]))
    assert len(images) == 2 and images.nbytes == 24
    assert np.asarray(images[1]).tolist() == [[[18, 19, 20], [21, 22, 23]]]
    with pytest.raises(ValueError, match="the shapes hold 24 bytes, the pixels 23"):
        DecodedImages(torch.zeros(23, dtype=torch.uint8), torch.tensor([[2, 3], [1, 2]]))
    assert decoded_images([], 8, lambda i: None) is None
