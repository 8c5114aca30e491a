"""Tests of the DAVIS 2017 loader on a tiny fixture written in the real on-disk format."""

import pytest
import torch
from davis_fixture import write_tiny_davis

from companion.data.davis import DAVIS2017


def test_reads_frames_instance_masks_and_splits(tmp_path):
    write_tiny_davis(tmp_path)
    val = DAVIS2017(tmp_path, split="val", max_objects=3)
    assert len(val) == 2 and len(DAVIS2017(tmp_path, split="train")) == 1
    clip = val[1]
    assert clip["name"] == "car" and clip["frames"].shape == (3, 3, 12, 20)
    assert clip["labels"].tolist() == [0, 0, -1]
    assert clip["masks"].shape == (3, 3, 12, 20)
    assert clip["masks"][2, 0, :4, 2:5].all() and clip["masks"][2, 0].sum() == 12
    assert clip["masks"][0, 1].sum() == 6 * 10 and not clip["masks"][:, 2].any()
    assert (clip["masks"].sum(1) <= 1).all()


def test_resizing_and_frame_limit(tmp_path):
    write_tiny_davis(tmp_path)
    clip = DAVIS2017(tmp_path, image_size=8, max_frames=2)[0]
    assert clip["frames"].shape == (2, 3, 8, 8) and clip["masks"].dtype == torch.bool


def test_missing_or_corrupted_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(RuntimeError, match="download=True"):
        DAVIS2017(tmp_path)
    base = write_tiny_davis(tmp_path)
    (base / "Annotations" / "480p" / "car" / "00001.png").unlink()
    with pytest.raises(RuntimeError, match="corrupted"):
        DAVIS2017(tmp_path)
    with pytest.raises(ValueError, match="split"):
        DAVIS2017(tmp_path, split="test")


def test_download_archive_checks_a_pinned_sha256(monkeypatch, tmp_path):
    import companion.data.davis as davis

    calls = []
    monkeypatch.setattr(davis, "download", lambda url, sha256, folder: calls.append((url, sha256)) or tmp_path)
    davis.download_archive(tmp_path)
    (url, sha256), = calls
    assert url.endswith("DAVIS-2017-trainval-480p.zip")
    assert sha256 is not None and len(sha256) == 64 and int(sha256, 16) >= 0
