"""Checkpoints: a format tag on the checksummed files of :mod:`companion.io`; one error per bad file."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .io import CorruptFileError, load_checked, save_atomic

__all__ = ["load_weights", "read_checkpoint", "write_checkpoint"]


def write_checkpoint(payload: dict, path: str | os.PathLike, format: str) -> Path:
    """Write ``payload`` tagged with ``format`` to ``path``, atomically and with a checksum."""
    path = Path(path)
    save_atomic({"format": format, **payload}, path)
    return path


def read_checkpoint(path: str | os.PathLike, format: str, remedy: str) -> dict:
    """The payload at ``path``; a :class:`CorruptFileError` naming the file and ``remedy`` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}: {remedy}.")
    payload = load_checked(path, what="checkpoint", fix=f"Delete it and {remedy}.")
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != format:
        raise CorruptFileError(f"{path} is not a checkpoint of format {format!r} (found "
                               f"{found!r}); delete it and {remedy}.")
    return payload


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike, remedy: str) -> nn.Module:
    """``model`` with ``state`` loaded; an error naming the file and ``remedy`` if they do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CorruptFileError(f"{path} holds weights that do not fit {type(model).__name__} "
                               f"({str(err).splitlines()[0]}); delete it and {remedy}.") from err
    return model
