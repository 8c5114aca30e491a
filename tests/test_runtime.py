"""Tests of profiles, device choice, seeding and the cache folder."""

import random

import numpy as np
import pytest
import torch

from companion import runtime


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Each test starts without an active profile and without the profile variables set."""
    monkeypatch.setattr(runtime, "_active", None)
    for name in (runtime.PROFILE_ENV, runtime.REAL_DATA_ENV, runtime.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)


def test_environment_variable_selects_the_profile(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    profile = runtime.set_profile()
    assert profile.name == "smoke" and profile.is_smoke and profile.device == torch.device("cpu")
    assert not profile.real_data
    monkeypatch.setenv(runtime.PROFILE_ENV, " FULL ")
    assert runtime.set_profile().name == "full"


def test_argument_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "full")
    assert runtime.set_profile("smoke").name == "smoke"


def test_default_without_environment_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.set_profile().name == "smoke"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.set_profile(device="cpu").name == "full"


def test_get_profile_reads_the_environment_once(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    first = runtime.get_profile()
    monkeypatch.setenv(runtime.PROFILE_ENV, "full")
    assert runtime.get_profile() is first


@pytest.mark.parametrize("name", ["smok", "gpu", "cpu"])
def test_unknown_profile_is_a_clear_error(name, monkeypatch):
    with pytest.raises(ValueError, match=f"Unknown profile '{name}'.*smoke, full"):
        runtime.set_profile(name)
    monkeypatch.setenv(runtime.PROFILE_ENV, name)
    with pytest.raises(ValueError, match=runtime.PROFILE_ENV):
        runtime.set_profile()


def test_empty_variable_means_not_set(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(runtime.PROFILE_ENV, "")
    assert runtime.set_profile().name == "smoke"


def test_pick_chooses_per_world():
    assert runtime.set_profile("smoke").pick(smoke=1, full=2) == 1
    assert runtime.set_profile("full", device="cpu").pick(smoke=1, full=2) == 2


def test_real_data_flag(monkeypatch):
    assert runtime.set_profile("full", device="cpu").real_data
    monkeypatch.setenv(runtime.REAL_DATA_ENV, "0")
    assert not runtime.set_profile("full", device="cpu").real_data
    monkeypatch.setenv(runtime.REAL_DATA_ENV, "maybe")
    with pytest.raises(ValueError, match=runtime.REAL_DATA_ENV):
        runtime.set_profile("full", device="cpu")
    with pytest.raises(ValueError, match="never downloads"):
        runtime.set_profile("smoke", real_data=True)


def test_resolve_device(monkeypatch):
    runtime.set_profile("smoke")
    assert runtime.resolve_device() == torch.device("cpu")
    assert runtime.resolve_device("meta") == torch.device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="1 CUDA device"):
        runtime.resolve_device("cuda:3")


def test_cuda_request_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.set_profile("full", device="cuda")


def _draw():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seeding_is_reproducible():
    runtime.set_profile("smoke", seed=3)
    first = _draw()
    runtime.seed_everything(3)
    assert _draw() == first
    runtime.set_profile("smoke", seed=4)
    assert _draw() != first
    runtime.seed_everything(2**40 + 3)  # seeds beyond 32 bits are accepted
    _draw()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "cache"))
    path = runtime.cache_dir("a", "b")
    assert path == tmp_path / "cache" / "a" / "b" and path.is_dir()
    monkeypatch.delenv(runtime.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runtime.cache_dir() == tmp_path / "home" / ".cache" / "companion"
