"""The dense stage: trained once, cached by a fingerprint, never reused for another setting."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from companion.classify import DenseRecipe, dense_model, load_data
from companion.classify.dense import FORMAT
from companion.io import save_atomic

TINY = dict(n_train=48, n_test=24, n_classes=3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    return tmp_path


def test_a_trained_model_is_loaded_and_other_settings_train_afresh(cache):
    data = load_data("concept_parts", **TINY)
    recipe = DenseRecipe(epochs=1, batch_size=16)
    first = dense_model(data, options={"width": 8}, recipe=recipe, device="cpu", progress=False)
    assert first.trained and first.path.exists() and first.path.parent == cache / "dense"
    again = dense_model(data, options={"width": 8}, recipe=recipe, device="cpu", progress=False)
    assert not again.trained and again.path == first.path
    for key, value in first.model.state_dict().items():
        assert torch.equal(value.cpu(), again.model.state_dict()[key]), key
    # another backbone option, recipe or dataset: another fingerprint, another file
    wider = dense_model(data, options={"width": 12}, recipe=recipe, device="cpu", progress=False)
    longer = dense_model(data, options={"width": 8}, recipe=DenseRecipe(epochs=2, batch_size=16),
                         device="cpu", progress=False)
    other = load_data("concept_parts", **{**TINY, "n_train": 51})
    moved = dense_model(other, options={"width": 8}, recipe=recipe, device="cpu", progress=False)
    assert wider.trained and longer.trained and moved.trained
    assert len({first.path, wider.path, longer.path, moved.path}) == 4


def test_a_cache_file_with_another_fingerprint_is_never_loaded(cache):
    data = load_data("concept_parts", **TINY)
    recipe = DenseRecipe(epochs=1, batch_size=16)
    first = dense_model(data, options={"width": 8}, recipe=recipe, device="cpu", progress=False)
    state = torch.load(first.path, weights_only=True)
    assert state["format"] == FORMAT
    state["fingerprint"] = "0" * 64  # written for another setting, e.g. another backbone
    save_atomic(state, first.path)
    assert dense_model(data, options={"width": 8}, recipe=recipe, device="cpu",
                       progress=False).trained


def test_a_damaged_cache_file_is_trained_again_with_a_warning(cache):
    data = load_data("concept_parts", **TINY)
    recipe = DenseRecipe(epochs=1, batch_size=16)
    first = dense_model(data, options={"width": 8}, recipe=recipe, device="cpu", progress=False)
    raw = bytearray(first.path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 16] = bytes(b ^ 0xFF for b in raw[middle:middle + 16])
    first.path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="cached dense model .* is damaged"):
        again = dense_model(data, options={"width": 8}, recipe=recipe, device="cpu",
                            progress=False)
    assert again.trained
    for key, value in first.model.state_dict().items():
        assert torch.equal(value.cpu(), again.model.state_dict()[key].cpu()), key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_trains_the_model_the_chapters_then_load(cache):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COMPANION_PROFILE": "smoke",
           "COMPANION_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes",
           "1", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "companion.classify.dense", "--data", "concept_parts", "--backbone",
           "small_cnn", "--width", "8", "--epochs", "1", "--batch-size", "16",
           "--n-train", "48", "--n-test", "24", "--n-classes", "3", "--device", "cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("trained ") == 1  # rank 0 reports, once
    files = list((cache / "dense").glob("concept_parts-*_small_cnn_*.pt"))
    final = [f for f in files if not f.name.endswith(".train.pt")]
    assert len(final) == 1
    # a chapter-style call finds it instead of training
    data = load_data("concept_parts", **TINY)
    got = dense_model(data, "small_cnn", options={"width": 8},
                      recipe=DenseRecipe.for_profile(epochs=1, batch_size=16), device="cpu")
    assert not got.trained and got.path == final[0]
