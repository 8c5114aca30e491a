"""The one last-layer interface: a fitted object (scikit-learn style) that gives a frozen sparse layer.

A method (SLDD, QPM, later Q-SENN, CHiQPM, DINO-QPM) subclasses :class:`LastLayer`, takes its
parameters in ``__init__`` and implements ``_fit(pooled, labels, maps, **kwargs)``, which sets
``layer_`` (the frozen :class:`~companion.classify.sparse.SparseLayer`) and whatever else it
learned, each with a trailing underscore. The base class validates the input once and derives
``selected_`` and ``weight_`` from ``layer_``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..features import FeatureSet
from .sparse import SparseLayer

__all__ = ["LastLayer", "NotFittedError", "check_labels", "split_features"]


class NotFittedError(RuntimeError):
    """A fitted attribute was read before ``fit``."""


def check_labels(labels: Any, n_classes: int | None = None) -> Tensor:
    """Class labels as a 1-D int64 tensor, or a clear error (float, negative, out of range, empty class)."""
    y = torch.as_tensor(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence of class indices, got shape "
                         f"{tuple(y.shape)}.")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}; convert "
                         "them with labels.long() only if they are whole numbers.")
    y = y.long()
    if int(y.min()) < 0:
        raise ValueError(f"labels must be non-negative class indices, got {int(y.min())} (-1 marks "
                         "unlabelled samples, which a classifier cannot be fitted on).")
    n = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if int(y.max()) >= n:
        raise ValueError(f"labels must lie in [0, {n}) for {n} classes, got {int(y.max())}.")
    counts = torch.bincount(y, minlength=n)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {empty[:10]} have no sample among the {len(y)} labels; every "
                         f"one of the {n} classes needs at least one.")
    return y


def split_features(features: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(pooled, labels, maps)`` from a ``FeatureSet`` or a tuple ``(pooled, labels[, maps])``."""
    if isinstance(features, FeatureSet):
        pooled, labels, maps = features.pooled, features.labels, features.maps
    elif isinstance(features, (tuple, list)) and len(features) in (2, 3):
        pooled, labels = features[0], features[1]
        maps = features[2] if len(features) == 3 else None
    else:
        raise TypeError(f"fit expects a FeatureSet or a tuple (pooled, labels[, maps]), got "
                        f"{type(features).__name__}.")
    pooled = torch.as_tensor(pooled)
    if pooled.ndim != 2 or not pooled.is_floating_point():
        raise ValueError(f"pooled features must be a (N, D) float tensor, got shape "
                         f"{tuple(pooled.shape)} and dtype {pooled.dtype}.")
    if not torch.isfinite(pooled).all():
        raise ValueError("pooled features contain NaN or infinite values.")
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != len(pooled):
        raise ValueError(f"need one label per sample: {len(pooled)} feature rows but labels of "
                         f"shape {tuple(labels.shape)}.")
    if maps is not None:
        maps = torch.as_tensor(maps)
        if maps.ndim != 4 or maps.shape[:2] != pooled.shape:
            raise ValueError(f"maps must be (N, D, h, w) = ({len(pooled)}, {pooled.shape[1]}, h, w) "
                             f"to match the pooled features, got {tuple(maps.shape)}.")
    return pooled, labels, maps


class LastLayer:
    """Base class of the methods' last layers: ``fit`` on cached features, then read ``layer_``."""

    def fit(self, features: Any, labels: Any = None, **kwargs: Any) -> LastLayer:
        """Fit on a ``FeatureSet`` or ``(pooled, labels[, maps])`` (or pooled and labels); returns self."""
        data = features if labels is None else (features, labels)
        pooled, y, maps = split_features(data)
        n_classes = getattr(self, "n_classes", None)
        y = check_labels(y, n_classes)
        self.n_classes_ = int(y.max()) + 1 if n_classes is None else int(n_classes)
        self.n_input_ = int(pooled.shape[1])
        self._fit(pooled.float(), y, maps, **kwargs)
        if not isinstance(getattr(self, "layer_", None), SparseLayer):
            raise TypeError(f"{type(self).__name__}._fit must set layer_ to a SparseLayer.")
        self.layer_.requires_grad_(self.layer_.trainable_norm)
        return self

    def _fit(self, pooled: Tensor, labels: Tensor, maps: Tensor | None, **kwargs: Any) -> None:
        raise NotImplementedError

    def _fitted(self) -> SparseLayer:
        layer = getattr(self, "layer_", None)
        if layer is None:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit(features) "
                                 "first.")
        return layer

    @property
    def selected_(self) -> Tensor:
        """Indices (into the D backbone features) of the n_f features the layer reads."""
        return self._fitted().selection

    @property
    def weight_(self) -> Tensor:
        """The frozen class–feature matrix W (n_c × n_f)."""
        return self._fitted().weight

    def check_width(self, pooled: Tensor) -> None:
        """Raise a clear error when ``pooled`` has another width than the features ``fit`` saw."""
        self._fitted()
        if pooled.ndim != 2 or pooled.shape[1] != self.n_input_:
            raise ValueError(f"{type(self).__name__} was fitted on {self.n_input_} features per "
                             f"sample, got {tuple(pooled.shape)}.")

    def predict(self, features: Any) -> Tensor:
        """Predicted classes of pooled features (or of a FeatureSet)."""
        pooled = features.pooled if isinstance(features, FeatureSet) else torch.as_tensor(features)
        self.check_width(pooled)
        with torch.no_grad():
            return self.layer_(pooled.float()).argmax(1)

    def attach(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` (a Classifier) whose head is a copy of the fitted layer."""
        if not hasattr(model, "head") or not hasattr(model, "num_features"):
            raise TypeError(f"attach needs a Classifier, got {type(model).__name__}.")
        if model.num_features != self.n_input_:
            raise ValueError(f"the model has {model.num_features} features but "
                             f"{type(self).__name__} was fitted on {self.n_input_}.")
        out = copy.deepcopy(model)
        out.head = copy.deepcopy(self._fitted())
        return out

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
