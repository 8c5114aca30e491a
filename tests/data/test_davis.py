"""Tests of the DAVIS 2017 loader on a tiny fixture written in the real on-disk format."""

import hashlib
import os
import shutil
import zipfile

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
    monkeypatch.setattr(davis, "download",
                        lambda url, sha256, folder: calls.append((url, sha256)) or tmp_path)
    davis.download_archive(tmp_path)
    (url, sha256), = calls
    assert url.endswith("DAVIS-2017-trainval-480p.zip")
    assert sha256 is not None and len(sha256) == 64 and int(sha256, 16) >= 0


def _official_zip(tmp_path, root, monkeypatch):
    """The fixture zipped like the official archive (top-level DAVIS/), placed as if downloaded."""
    import companion.data.davis as davis

    source = write_tiny_davis(tmp_path / "source")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / davis.ARCHIVE_NAME
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(source.rglob("*")):
            z.write(path, path.relative_to(source.parent).as_posix())
    monkeypatch.setattr(davis, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    return archive


def test_download_over_a_partial_folder_replaces_it(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _official_zip(tmp_path, root, monkeypatch)
    partial = write_tiny_davis(root)
    shutil.rmtree(partial / "JPEGImages" / "480p" / "car")  # an earlier copy, half there
    (root / "DAVIS.extracting-root" / "DAVIS").mkdir(parents=True)  # left by the older layout
    with pytest.raises(RuntimeError, match="'car', which has no frames"):
        DAVIS2017(root)
    data = DAVIS2017(root, download=True)
    assert len(data) == 2 and data[1]["frames"].shape == (3, 3, 12, 20)
    assert sorted(p.name for p in root.iterdir()) == ["DAVIS", "DAVIS-2017-trainval-480p.zip"]


@pytest.mark.parametrize("step", ["extract", "move"])
def test_download_interrupted_between_steps_is_redone(tmp_path, monkeypatch, step):
    import companion.download as download_module

    root = tmp_path / "data"
    _official_zip(tmp_path, root, monkeypatch)
    write_tiny_davis(root)
    (root / "DAVIS" / "ImageSets" / "2017" / "val.txt").write_text("")  # damaged: re-unpack
    real_replace = os.replace

    def interrupt(src, dst):  # Ctrl-C in the notebook at this step
        moving_davis = os.path.basename(src) == "DAVIS"
        if (step == "move") == moving_davis and (moving_davis or "extracting" in str(src)):
            raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(download_module.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        DAVIS2017(root, download=True)
    monkeypatch.setattr(download_module.os, "replace", real_replace)
    if step == "move":  # the old copy is gone already, the new one not in place yet
        assert not (root / "DAVIS").exists()
    data = DAVIS2017(root, download=True)
    assert len(data) == 2 and data[0]["name"] == "bear"
    assert sorted(p.name for p in root.iterdir()) == ["DAVIS", "DAVIS-2017-trainval-480p.zip"]
