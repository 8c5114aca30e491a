"""Tests of checksummed atomic saving: round trip, damage detection, faults while saving."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from torch import nn

import companion.io as io_module
from companion.features import extract_features
from companion.io import CorruptFileError, load_checked, save_atomic
from companion.train import fit


def flip_middle(path, n=16):
    """Invert ``n`` bytes in the middle of a file, as a failing disk or copy would."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = bytes(b ^ 0xFF for b in data[middle:middle + n])
    path.write_bytes(bytes(data))


def test_round_trip_stays_a_plain_torch_archive(tmp_path):
    state = {"weight": torch.randn(64, 32), "step": 3, "name": "x"}
    save_atomic(state, tmp_path / "s.pt")
    for loaded in (load_checked(tmp_path / "s.pt", what="test file"),
                   torch.load(tmp_path / "s.pt", weights_only=True)):  # other readers still work
        assert loaded.keys() == state.keys() and loaded["step"] == 3
        assert torch.equal(loaded["weight"], state["weight"])
    assert zipfile.ZipFile(tmp_path / "s.pt").comment.startswith(b"companion-sha256:")
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]


def test_flipped_bytes_in_a_checkpoint_are_an_error_that_names_the_file(tmp_path):
    path = tmp_path / "run.pt"
    recipe = dict(epochs=1, lr=0.1, batch_size=8, seed=0, progress=False, device="cpu")
    data = (torch.randn(32, 6), torch.arange(32) % 3)
    fit(nn.Linear(6, 3), data, checkpoint=path, **recipe)
    assert load_checked(path, what="checkpoint")["epoch"] == 1
    flip_middle(path)
    with pytest.raises(CorruptFileError) as info:
        fit(nn.Linear(6, 3), data, checkpoint=path, **{**recipe, "epochs": 2})
    message = str(info.value)
    assert str(path) in message and "damaged" in message and "resume=False" in message
    fit(nn.Linear(6, 3), data, checkpoint=path, resume=False, **recipe)  # the way out works
    assert load_checked(path, what="checkpoint")["epoch"] == 1


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 256, 1)

    def forward_features(self, x):
        return self.conv(x)


def test_flipped_bytes_in_a_feature_cache_are_recomputed_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model, x = Tiny(), torch.rand(8, 3, 4, 4)
    fresh = extract_features(model, x, cache_key="tiny", progress=False, device="cpu", maps=True)
    path = tmp_path / "features" / "tiny.pt"
    flip_middle(path)
    with pytest.warns(UserWarning, match=f"feature cache file {path} is damaged.*recomputed"):
        again = extract_features(model, x, cache_key="tiny", progress=False, device="cpu",
                                 maps=True)
    assert torch.equal(again.pooled, fresh.pooled) and torch.equal(again.maps, fresh.maps)
    assert torch.equal(load_checked(path, what="cache")["pooled"], fresh.pooled)  # rewritten


@pytest.mark.parametrize("damage, words", [
    ("truncate", "truncated or damaged"),
    ("flip", "is damaged: its contents have SHA-256"),
    ("flip checksum", "is damaged"),
    ("text", "not a file written by companion"),
    ("plain torch.save", "has no checksum"),
])
def test_every_kind_of_bad_file_is_refused(tmp_path, damage, words):
    path = tmp_path / "f.pt"
    save_atomic({"w": torch.randn(256)}, path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "flip":
        flip_middle(path)
    elif damage == "flip checksum":
        data = bytearray(path.read_bytes())
        data[-1] = ord("0") if data[-1] != ord("0") else ord("1")
        path.write_bytes(bytes(data))
    elif damage == "text":
        path.write_text("not a checkpoint")
    else:
        torch.save({"w": torch.randn(256)}, path)
    with pytest.raises(CorruptFileError, match=words) as info:
        load_checked(path, what="test file", fix="Delete it and run again.")
    assert str(path) in str(info.value) and str(info.value).endswith("Delete it and run again.")


@pytest.mark.parametrize("where, error", [
    ("save", OSError(errno.ENOSPC, "No space left on device")),
    ("save", RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")),
    ("replace", OSError(errno.EROFS, "Read-only file system")),
])
def test_a_full_or_read_only_disk_is_named_and_leaves_the_old_file(tmp_path, monkeypatch, where,
                                                                    error):
    path = tmp_path / "cache" / "f.pt"
    save_atomic({"v": 1}, path)

    def fail(*args, **kwargs):
        if where == "save":  # torch has begun writing when the disk fills up
            (tmp_path / "cache" / f".f.pt.{io_module._HOST}.{os.getpid()}.tmp").write_bytes(b"PK")
        raise error
    monkeypatch.setattr(io_module.torch if where == "save" else io_module.os,
                        "save" if where == "save" else "replace", fail)
    with pytest.raises(OSError) as info:
        save_atomic({"v": 2}, path)
    message = str(info.value)
    assert f"Could not write {path}" in message and "COMPANION_CACHE" in message
    assert str(path.parent) in message
    monkeypatch.undo()
    assert load_checked(path, what="test file") == {"v": 1}
    assert [p.name for p in path.parent.iterdir()] == ["f.pt"]


KILLED_SAVE = textwrap.dedent("""
    import os, signal
    import companion.io as io_module
    def replace_then_die(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)
    io_module.os.replace = replace_then_die
    io_module.save_atomic({{"v": 2}}, {path!r})
""")


def test_temporary_files_of_killed_processes_are_removed_on_the_next_save(tmp_path):
    path = tmp_path / "f.pt"
    save_atomic({"v": 1}, path)
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE.format(path=str(path))],
                             stderr=subprocess.PIPE, text=True)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    orphans = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert orphans == [f".f.pt.{io_module._HOST}.{child.pid}.tmp"]
    assert load_checked(path, what="test file") == {"v": 1}  # the kill did not touch the file
    live = tmp_path / f".f.pt.{io_module._HOST}.{os.getppid()}.tmp"  # a writer still at work
    live.write_bytes(b"")
    save_atomic({"v": 3}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "f.pt"])
    assert load_checked(path, what="test file") == {"v": 3}
