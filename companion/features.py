"""Pooled features and feature maps of a whole dataset, cached on disk and keyed by the model's weights."""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .batches import as_dataset, split_batch, to_device
from .io import CorruptFileError, load_checked, save_atomic
from .progress import tqdm
from .runtime import autocast, cache_dir, resolve_device

__all__ = ["FeatureSet", "extract_features", "weights_fingerprint"]

CACHE_FORMAT = "companion.features/1"


@dataclass(frozen=True)
class FeatureSet:
    """Features of N samples: pooled f ``(N, D)``, labels ``(N,)`` (-1: none), maps M ``(N, D, h, w)``."""

    pooled: torch.Tensor
    labels: torch.Tensor
    maps: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_features(self) -> int:
        return self.pooled.shape[1]


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _maps_and_pooled(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps M and pooled features f of a Classifier or a Backbone."""
    if hasattr(model, "forward_all"):
        _, pooled, maps = model.forward_all(x)
        return maps, pooled
    if hasattr(model, "forward_features"):
        maps = model.forward_features(x)
        return maps, maps.mean(dim=(2, 3))
    raise TypeError(f"extract_features needs a model with forward_all (a Classifier) or "
                    f"forward_features (a Backbone), got {type(model).__name__}.")


def _data_fingerprint(dataset: Any, n_samples: int = 16) -> str:
    """SHA-256 of ``n_samples`` evenly spaced samples (first and last included) of ``dataset``."""
    h = hashlib.sha256()

    def add(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            t = item.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(item.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(item, np.ndarray) or hasattr(item, "__array_interface__"):  # NumPy, PIL
            a = np.ascontiguousarray(np.asarray(item))
            h.update(f"A{a.dtype}{a.shape}|".encode() + a.tobytes())
        elif isinstance(item, Mapping):
            for key in sorted(item, key=str):
                h.update(f"K{key!r}|".encode())
                add(item[key])
        elif isinstance(item, (list, tuple)):
            h.update(f"L{len(item)}|".encode())
            for part in item:
                add(part)
        elif item is None or isinstance(item, (bool, int, float, complex, str, bytes, np.generic)):
            h.update(f"V{item!r}|".encode())
        else:  # an object without a stable byte form: only its type takes part
            h.update(f"O{type(item).__qualname__}|".encode())

    n = len(dataset)
    for i in sorted({round(j * (n - 1) / max(n_samples - 1, 1)) for j in range(min(n, n_samples))}):
        add(dataset[i])
    return h.hexdigest()


def _cache_path(cache_key: str):
    """The cache file of ``cache_key``, which must be a plain file name."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", cache_key):
        raise ValueError(f"cache_key {cache_key!r} may only hold letters, digits, '_', '-' and '.', "
                         "since it names a file in the cache folder.")
    return cache_dir("features") / f"{cache_key}.pt"


def _load_cached(path, fingerprint: str, n: int, maps: bool) -> FeatureSet | None:
    """The cached features if they match the weights, the data length and ``maps``; else None."""
    if not path.exists():
        return None
    try:
        state = load_checked(path, what="feature cache file",
                             fix="The features are recomputed and the file overwritten.")
    except CorruptFileError as err:  # damaged or unreadable: recompute and overwrite
        warnings.warn(f"{err}", stacklevel=3)
        return None
    if (not isinstance(state, dict) or state.get("format") != CACHE_FORMAT
            or state.get("fingerprint") != fingerprint or state.get("n") != n
            or (maps and state.get("maps") is None)):
        return None
    return FeatureSet(pooled=state["pooled"], labels=state["labels"],
                      maps=state["maps"] if maps else None)


def extract_features(model: nn.Module, data: Any, *, batch_size: int = 256,
                     device: str | torch.device | None = None, maps: bool = False,
                     cache_key: str | None = None, progress: bool = True, amp: bool | None = None,
                     num_workers: int = 0, collate_fn: Callable | None = None) -> FeatureSet:
    """Pooled features (and with ``maps=True`` the feature maps) of every sample, in order.

    Runs in eval mode without gradients. With ``cache_key`` the result is stored atomically in
    ``cache_dir("features")`` and reused while the model's weights, the data's length and a
    fingerprint of 16 evenly spaced samples are unchanged; otherwise it is recomputed.
    """
    dataset = as_dataset(data)
    if len(dataset) == 0:
        raise ValueError("Cannot extract features of an empty dataset.")
    path = _cache_path(cache_key) if cache_key is not None else None
    # keyed on the weights and on sampled inputs, so other data of the same length is recomputed
    fingerprint = (f"{weights_fingerprint(model)}|data:{_data_fingerprint(dataset)}"
                   if path is not None else "")
    if path is not None and (hit := _load_cached(path, fingerprint, len(dataset), maps)) is not None:
        return hit

    device = resolve_device(device)
    loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=False, num_workers=num_workers,
                        collate_fn=collate_fn, pin_memory=device.type == "cuda")
    pooled, labels, all_maps = [], [], []
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="features", disable=not progress):
                x, y = split_batch(to_device(batch, device))
                with autocast(device, amp):
                    m, f = _maps_and_pooled(model, x)
                pooled.append(f.float().cpu())
                labels.append(y.cpu() if y is not None else torch.full((len(x),), -1))
                if maps:
                    all_maps.append(m.float().cpu())
    finally:
        model.train(was_training)
    result = FeatureSet(pooled=torch.cat(pooled), labels=torch.cat(labels).long(),
                        maps=torch.cat(all_maps) if maps else None)
    bad = (~torch.isfinite(result.pooled).all(dim=1)).nonzero().flatten()
    if len(bad):
        raise ValueError(f"The features of {len(bad)} of {len(result)} samples are NaN or infinite "
                         f"(first: samples {bad[:5].tolist()}): their inputs hold NaN/inf pixels, or "
                         "the model overflows. Clean the data (check torch.isfinite(x).all()) or, "
                         "under mixed precision, pass amp=False; nothing was cached.")
    if path is not None:
        save_atomic({"format": CACHE_FORMAT, "fingerprint": fingerprint, "n": len(dataset),
                     "pooled": result.pooled, "labels": result.labels, "maps": result.maps}, path)
    return result
