"""Datasets and batches as the loops see them: tensors to datasets, batches to a device or to NumPy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["as_dataset", "batch_len", "split_batch", "to_device", "to_numpy"]


def as_dataset(data: Any) -> Dataset:
    """A map-style dataset from a ``Dataset`` or a tuple of equally long tensors ``(x, y)``."""
    if isinstance(data, DataLoader):
        raise TypeError("Pass the Dataset itself (loader.dataset), not a DataLoader: the loop builds "
                        "its own loader so that batch order is seeded, checkpointed and sharded.")
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        if len({len(t) for t in data}) != 1:
            raise ValueError("Tensors given as data must have the same length (first dimension), got "
                             f"{[tuple(t.shape) for t in data]}.")
        return TensorDataset(*data)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return data
    raise TypeError(f"Expected a map-style Dataset (with __len__ and __getitem__) or a tuple of "
                    f"tensors (x, y), got {type(data).__name__}.")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A NumPy array of a tensor (detached, on the CPU) or of anything ``np.asarray`` takes."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def batch_len(batch: Any) -> int:
    """Number of samples in a (nested) batch, read from its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, Mapping):
        return batch_len(next(iter(batch.values())))
    return batch_len(batch[0])


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs and (if present) labels of a batch ``(x, y, ...)`` or ``x``."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(f"Expected batches of x or (x, y, ...), got {type(batch).__name__}.")
