"""SLDD ("Take 5"): select n_f features with a group-lasso path, fit a sparse layer with ~k per class.

The recipe of Norrenbrock et al. (2023) on cached pooled features f (N × D):

1. ``select_features``: walk the group elastic-net path (α = 0.8, group lasso over the columns of W)
   from λ_max down and keep the first n_f (``n_features``) features to enter, ties broken by their
   group norm — a forward selection guided by the path, like the paper's modified glm-saga.
2. ``elastic_net_path`` (α = 0.99) on the n_f selected, standardised features.
3. ``choose_path_entry``: the densest entry whose mean non-zeros per class stays ≤ k / drop_rate
   (5 / 0.5 = 10).
4. ``keep_largest``: zero all but the k·n_c largest |w| of that entry (on average k per class).
5. ``SparseLayer(selection, W, μ, σ, b)`` (``companion.classify.sparse``), ready to fine-tune.

``SLDD(n_features, per_class).fit(features)`` runs the five steps (the one last-layer interface).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..features import FeatureSet
from ..solvers.elastic_net import ElasticNetPath, constant_columns, elastic_net_path, standardize
from .base import LastLayer
from .sparse import SparseLayer

__all__ = ["SLDD", "FeatureSelection", "choose_path_entry", "keep_largest", "select_features"]


@dataclass(frozen=True)
class FeatureSelection:
    """The selected features in order of entry along the group-lasso path."""

    indices: Tensor  # (n_f,) feature indices, first to enter first
    entry: Tensor  # (n_f,) path index at which each entered (len(path) where it never did)
    path: ElasticNetPath  # the group path that was walked


def _check_sizes(n_available: int, n_features: int, per_class: int | None = None) -> None:
    if not 1 <= int(n_features) <= n_available:
        raise ValueError(f"n_features (n_f) must lie in [1, {n_available}] (the number of features "
                         f"available), got {n_features}.")
    if per_class is not None and not 1 <= int(per_class) <= int(n_features):
        raise ValueError(f"per_class (k) must lie in [1, n_features={n_features}]: a class cannot use "
                         f"more features than are selected, got {per_class}.")


def select_features(features: Tensor, labels: Tensor, n_features: int, *, alpha: float = 0.8,
                    n_lambdas: int = 100, epsilon: float = 1e-3, tol: float = 1e-4,
                    max_iter: int = 2000, device: str | torch.device | None = None,
                    progress: bool = True) -> FeatureSelection:
    """Select n_f (``n_features``) of the D features by their order of entry on the group-lasso path.

    Constant features (a ReLU channel that never fires, say) carry no information and never enter.
    """
    if not isinstance(features, Tensor) or features.ndim != 2:
        raise ValueError("features must be a (N, D) tensor of pooled features.")
    _check_sizes(features.shape[1], n_features)
    constant = constant_columns(features)  # NaN columns count as varying: standardize reports them
    varying = torch.nonzero(~constant).flatten()
    if len(varying) < int(n_features):
        raise ValueError(f"Only {len(varying)} of the {features.shape[1]} features vary over these "
                         f"samples, fewer than n_features={n_features}; use more samples or fewer "
                         "features.")
    z, _, _ = standardize(features[:, varying])
    path = elastic_net_path(z, labels, alpha=alpha, n_lambdas=n_lambdas, epsilon=epsilon, group=True,
                            tol=tol, max_iter=max_iter, max_features=n_features, device=device,
                            progress=progress)
    if len(varying) < features.shape[1]:  # give the path's weights all D columns again
        weights = path.weights.new_zeros((*path.weights.shape[:2], features.shape[1]))
        weights[..., varying.to(weights.device)] = path.weights
        path = replace(path, weights=weights)
    used = (path.weights != 0).any(dim=1)  # (K, D)
    entry = torch.where(used.any(dim=0), used.double().argmax(dim=0), torch.tensor(len(path)))
    norm = path.weights[-1].norm(dim=0)
    # order by entry, then by group norm at the end of the path, then by index; constant ones last
    key = entry.double() * (norm.max() + 1) * 2 - norm.double()
    key[constant.to(key.device)] = torch.inf
    order = torch.argsort(key, stable=True)[:n_features]
    return FeatureSelection(indices=order, entry=entry[order], path=path)


def choose_path_entry(path: ElasticNetPath, per_class: float, drop_rate: float = 0.5) -> int:
    """Index of the densest path entry whose mean non-zeros per class is ≤ ``per_class / drop_rate``."""
    if not 0 < drop_rate <= 1:
        raise ValueError(f"drop_rate must lie in (0, 1], got {drop_rate}.")
    allowed = torch.nonzero(path.per_class <= per_class / drop_rate).flatten()
    if len(allowed) == 0:
        raise ValueError(f"No path entry has ≤ {per_class / drop_rate:g} non-zeros per class; start "
                         "the path at λ_max (the default) so that its first entry is empty.")
    counts = path.per_class[allowed]
    return int(allowed[counts == counts.max()][0])


def keep_largest(weight: Tensor, n_keep: int) -> Tensor:
    """Zero all but the ``n_keep`` entries of largest |w| (ties: lowest flat index first)."""
    if not 0 <= int(n_keep) <= weight.numel():
        raise ValueError(f"n_keep must lie in [0, {weight.numel()}], got {n_keep}.")
    flat = weight.flatten()
    order = torch.argsort(-flat.abs(), stable=True)[:int(n_keep)]
    out = torch.zeros_like(flat)
    out[order] = flat[order]
    return out.view_as(weight)


class SLDD(LastLayer):
    """SLDD's last layer: n_f features by the group path, ~k weights per class by the path and a cut.

    Fitted state: ``selection_`` (the group path and order of entry), ``path_`` (the elastic-net
    path on the selected, standardised features), ``entry_`` (the path entry used), ``mean_`` and
    ``std_`` (the standardisation) and ``layer_`` (the frozen ``SparseLayer``).
    """

    def __init__(self, n_features: int = 50, per_class: int = 5, *, drop_rate: float = 0.5,
                 select_alpha: float = 0.8, alpha: float = 0.99, n_lambdas: int = 100,
                 epsilon: float = 1e-3, tol: float = 1e-4, max_iter: int = 2000,
                 device: str | torch.device | None = None, progress: bool = True):
        self.n_features, self.per_class, self.drop_rate = n_features, per_class, drop_rate
        self.select_alpha, self.alpha, self.n_lambdas = select_alpha, alpha, n_lambdas
        self.epsilon, self.tol, self.max_iter = epsilon, tol, max_iter
        self.device, self.progress = device, progress

    def _fit(self, pooled: Tensor, labels: Tensor, maps: Tensor | None,
             val: tuple[Tensor, Tensor] | FeatureSet | None = None,
             selection: FeatureSelection | None = None, path: ElasticNetPath | None = None) -> None:
        """The five steps; ``val`` (pooled, labels) records the path's held-out accuracy.

        ``selection`` and ``path``, when given, are steps 1 and 2 already computed on these
        features (as a chapter does step by step): they are checked and reused, not refitted.
        """
        _check_sizes(pooled.shape[1], self.n_features, self.per_class)
        opts = dict(n_lambdas=self.n_lambdas, epsilon=self.epsilon, tol=self.tol,
                    max_iter=self.max_iter, device=self.device, progress=self.progress)
        if selection is None:
            selection = select_features(pooled, labels, self.n_features, alpha=self.select_alpha,
                                        **opts)
        elif len(selection.indices) != self.n_features or int(selection.indices.max()) >= pooled.shape[1]:
            raise ValueError(f"selection holds {len(selection.indices)} features (largest index "
                             f"{int(selection.indices.max())}), but this SLDD selects n_features="
                             f"{self.n_features} of {pooled.shape[1]}: pass the selection made on "
                             "these features with the same n_features.")
        self.selection_ = selection
        idx = self.selection_.indices
        z, self.mean_, self.std_ = standardize(pooled[:, idx])
        if isinstance(val, FeatureSet):
            val = (val.pooled, val.labels)
        if val is not None:
            if val[0].ndim != 2 or val[0].shape[1] != pooled.shape[1]:
                raise ValueError(f"val features must be (N, {pooled.shape[1]}) like the training "
                                 f"features, got {tuple(val[0].shape)}.")
            val = ((val[0][:, idx] - self.mean_) / self.std_, val[1])
        if path is None:
            path = elastic_net_path(z, labels, alpha=self.alpha, val=val, **opts)
        elif path.weights.shape[1:] != (self.n_classes_, self.n_features):
            raise ValueError(f"path weights are {tuple(path.weights.shape[1:])} per entry, expected "
                             f"(n_classes, n_features) = ({self.n_classes_}, {self.n_features}): "
                             "pass the path fitted on the selected features.")
        self.path_ = path
        self.entry_ = choose_path_entry(self.path_, self.per_class, self.drop_rate)
        self.layer_ = self.layer_at(self.entry_)

    def layer_at(self, entry: int, per_class: float | None = None) -> SparseLayer:
        """The sparse layer of path entry ``entry`` with the k·n_c largest weights kept."""
        if getattr(self, "path_", None) is None:
            self._fitted()
        k = self.per_class if per_class is None else per_class
        weight = keep_largest(self.path_.weights[entry], round(k * self.n_classes_))
        return SparseLayer(self.selection_.indices, weight.float(), self.mean_, self.std_,
                           self.path_.biases[entry].float())
