"""DistributedDataParallel under ``torchrun``: the process group, sums over ranks, DDP-aware views."""

from __future__ import annotations

import functools
import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["world", "setup_distributed", "all_reduce_sums", "Dispatch", "DistributedView"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed(device: torch.device) -> torch.device:
    """Under ``torchrun`` (``WORLD_SIZE > 1``): pick this process's device and join the group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sums of ``values`` over all ranks (unchanged in a single process)."""
    if world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


class Dispatch(nn.Module):
    """Runs any ``forward*`` method of the wrapped model as one forward, so DDP sees every call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.model, method)(*args, **kwargs)


class DistributedView:
    """What a loss function sees under DDP: the model, with its ``forward*`` methods run by DDP."""

    def __init__(self, ddp: nn.Module, model: nn.Module):
        self._ddp, self._model = ddp, model

    def __call__(self, *args, **kwargs):
        return self._ddp("forward", *args, **kwargs)

    def __getattr__(self, name: str):
        if name.startswith("forward") and callable(getattr(self._model, name, None)):
            return functools.partial(self._ddp, name)
        return getattr(self._model, name)
