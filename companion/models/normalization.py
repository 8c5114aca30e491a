"""The input normalisation a pretrained backbone expects, from its own pretrained config."""

from __future__ import annotations

from torch import nn

__all__ = ["pretrained_normalization"]

RGB = tuple[float, float, float]


def pretrained_normalization(model: nn.Module) -> tuple[RGB, RGB]:
    """Per-channel ``(mean, std)`` to apply to [0, 1] pixels before a timm ``model``.

    Taken from the model's ``pretrained_cfg`` through ``timm.data.resolve_data_config`` (ImageNet's
    statistics for a model without one), so DINOv2, CLIP or ImageNet weights each get their own.
    """
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    mean, std = (tuple(float(v) for v in config[k]) for k in ("mean", "std"))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"{type(model).__name__}'s pretrained config gives mean {mean} and std "
                         f"{std}; expected three channels and positive std.")
    return mean, std
