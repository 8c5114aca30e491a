"""Saving and loading files so that a reader never sees a half-written one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_atomic"]


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename it into place (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
