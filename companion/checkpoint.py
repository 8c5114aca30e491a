"""The rooms' pretrained checkpoints: a format tag, atomic writes, one clear error per bad file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .io import save_atomic

__all__ = ["CheckpointError", "load_weights", "read_checkpoint", "write_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, of another format or holds weights of other models."""


def write_checkpoint(payload: dict, path: str | os.PathLike, format: str) -> Path:
    """Write ``payload`` tagged with ``format`` to ``path``, atomically."""
    path = Path(path)
    save_atomic({"format": format, **payload}, path)
    return path


def read_checkpoint(path: str | os.PathLike, format: str, remedy: str) -> dict:
    """The payload at ``path``; an error naming the file and ``remedy`` (how to remake it) if unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}: {remedy}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, a foreign pickle, an empty file: all unreadable
        raise CheckpointError(f"{path} is truncated or not a torch checkpoint "
                              f"({type(err).__name__}); delete it and {remedy}.") from err
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != format:
        raise CheckpointError(f"{path} is not a checkpoint of format {format!r} (found "
                              f"{found!r}); delete it and {remedy}.")
    return payload


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike, remedy: str) -> nn.Module:
    """``model`` with ``state`` loaded; an error naming the file and ``remedy`` if they do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} holds weights that do not fit {type(model).__name__} "
                              f"({str(err).splitlines()[0]}); delete it and {remedy}.") from err
    return model
