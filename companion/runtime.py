"""Profiles (smoke / full), device choice, seeding and the cache folder."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILE_ENV = "COMPANION_PROFILE"
CACHE_ENV = "COMPANION_CACHE"
REAL_DATA_ENV = "COMPANION_REAL_DATA"
PROFILES = ("smoke", "full")

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """The world a chapter runs in.

    ``smoke``: synthetic data, small models, CPU, minutes. ``full``: a GPU, larger models and,
    when ``real_data`` is true, the real datasets and pretrained weights (downloads).
    """

    name: str
    device: torch.device
    seed: int = 0
    real_data: bool = False

    @property
    def is_smoke(self) -> bool:
        return self.name == "smoke"

    def pick(self, smoke: T, full: T) -> T:
        """Return the value that belongs to this profile."""
        return smoke if self.is_smoke else full

    def __repr__(self) -> str:
        return (f"Profile(name={self.name!r}, device={str(self.device)!r}, seed={self.seed}, "
                f"real_data={self.real_data})")


_active: Profile | None = None


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
            f"(set the environment variable {PROFILE_ENV} or pass profile=... in the chapter's "
            "parameters cell)."
        )
    return key


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean: use 1 or 0.")


def set_profile(name: str | None = None, *, device: str | torch.device | None = None,
                seed: int = 0, real_data: bool | None = None) -> Profile:
    """Choose the active profile and seed everything; returns it.

    ``name=None`` reads ``$COMPANION_PROFILE`` and falls back to ``full`` on a CUDA machine and
    ``smoke`` elsewhere. ``real_data`` (full world only) defaults to ``$COMPANION_REAL_DATA`` or
    true; set it to false on a GPU without internet to run the larger synthetic configuration.
    """
    global _active
    if name is None:
        name = os.environ.get(PROFILE_ENV) or ("full" if torch.cuda.is_available() else "smoke")
    key = _check_name(name)
    dev = _as_device(device) if device is not None else (
        _default_device() if key == "full" else torch.device("cpu"))
    if real_data is None:
        env = _env_flag(REAL_DATA_ENV)
        real_data = (True if env is None else env) if key == "full" else False
    if key == "smoke" and real_data:
        raise ValueError("The smoke profile never downloads: real_data=True needs profile='full'.")
    _active = Profile(name=key, device=dev, seed=int(seed), real_data=bool(real_data))
    seed_everything(_active.seed)
    return _active


def get_profile() -> Profile:
    """The active profile (set from the environment on first use)."""
    return _active if _active is not None else set_profile()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` means the active profile's device; a CUDA device must exist on this machine."""
    return get_profile().device if device is None else _as_device(device)


def _as_device(device: str | int | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or a clear error."""
    fix = ("pass device='cpu', 'cuda' or 'cuda:N' (or 'mps' on Apple silicon), or None for the "
           "active profile's device")
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0' or a torch.device, got "
                        f"{type(device).__name__}; {fix}.")
    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"Unknown device {device!r}: {fix}.") from err
    return _check_device(parsed)


def _check_device(device: torch.device) -> torch.device:
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"Device {device} was requested but MPS (Apple silicon) is not available "
                           "on this machine; pass device='cpu' or 'cuda'.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"Device {device} was requested but CUDA is not available on this "
                           "machine; pass device='cpu' or run on a GPU runtime.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"Device {device} was requested but this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s).")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cache_dir(*parts: str) -> Path:
    """The cache folder (``$COMPANION_CACHE`` or ``~/.cache/companion``), created on demand."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "companion").expanduser()
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = (f"{CACHE_ENV}={os.environ[CACHE_ENV]!r}" if os.environ.get(CACHE_ENV)
                 else f"the default {root} ({CACHE_ENV} is not set)")
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        problem = (f"{blocker} is a file, not a folder" if blocker is not None
                   else os.strerror(err.errno) if err.errno else str(err))
        raise type(err)(err.errno, f"Cannot create the cache folder {path}: {problem}. The cache "
                        f"folder comes from {where}; set {CACHE_ENV} to a folder you can write "
                        "to, with free space.") from err
    return path



def use_amp(device: torch.device, amp: bool | None = None) -> bool:
    """The one mixed-precision switch: float16 on CUDA unless ``amp=False``, never elsewhere."""
    return device.type == "cuda" and amp is not False


def autocast(device: torch.device, amp: bool | None = None):
    """float16 autocast where :func:`use_amp` says so; a no-op context elsewhere."""
    return torch.autocast(device.type, dtype=torch.float16, enabled=use_amp(device, amp))
