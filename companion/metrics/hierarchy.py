"""CHiQPM's hierarchy: each class's k features ordered by activation, and the tree they form.

For one image with features f (n_f, after the head's normalisation and ReLU) and a binary W with
k features per class, class c's *path* is its k assigned features sorted by activation,
strongest first (ties: lower feature index first). Level j of the tree groups the classes whose
first j path steps coincide, in order; level k holds single classes (rows of W are unique).

Public API
----------
``Hierarchy`` (paths, values, predicted, depth; index it with ``h[idx]``),
``decision_hierarchy(features, weight, logits=None)``, ``shared_depth(paths, ref)``,
``subtrees(paths)``, ``class_affinity(depth_to_true, labels, n_classes)`` and
``sibling_recovery(affinity, superclass)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..batches import to_numpy

__all__ = ["Hierarchy", "class_affinity", "decision_hierarchy", "shared_depth",
           "sibling_recovery", "subtrees"]


@dataclass(frozen=True)
class Hierarchy:
    """Per image: ``paths`` (B, C, k) feature indices, ``values`` (B, C, k) their activations,
    ``predicted`` (B,) the top class and ``depth`` (B, C) how many leading steps each class
    shares with the predicted class's path (k for the predicted class itself)."""

    paths: np.ndarray
    values: np.ndarray
    predicted: np.ndarray
    depth: np.ndarray

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def per_class(self) -> int:
        return self.paths.shape[2]

    @property
    def n_classes(self) -> int:
        return self.paths.shape[1]

    def __getitem__(self, index) -> Hierarchy:
        idx = np.atleast_1d(np.arange(len(self))[index])
        return Hierarchy(self.paths[idx], self.values[idx], self.predicted[idx], self.depth[idx])


def _rows(weight) -> np.ndarray:
    W = to_numpy(weight, float)
    if W.ndim != 2 or not np.isin(W, (0.0, 1.0)).all():
        raise ValueError(f"weight must be a binary class–feature matrix (C, n_f); got shape "
                         f"{W.shape} with values outside {{0, 1}}." if W.ndim == 2 else
                         f"weight must be 2-D (C, n_f); got shape {W.shape}.")
    k = W.sum(1)
    if len(set(k.tolist())) != 1 or k[0] == 0:
        raise ValueError(f"every class needs the same number k ≥ 1 of features; rows have "
                         f"{sorted(set(k.astype(int).tolist()))}.")
    return np.stack([np.flatnonzero(r) for r in W])  # (C, k), ascending feature index


def shared_depth(paths: np.ndarray, ref) -> np.ndarray:
    """(B, C): number of leading steps of each class's path equal to class ``ref[b]``'s path."""
    paths = np.asarray(paths)
    ref = np.broadcast_to(np.asarray(ref, dtype=int), (len(paths),))
    own = paths[np.arange(len(paths)), ref][:, None, :]  # (B, 1, k)
    same = np.cumprod(paths == own, axis=2)
    return same.sum(2)


def decision_hierarchy(features, weight, logits=None) -> Hierarchy:
    """The paths of every class for every image, and their depth against the predicted class.

    ``features`` (B, n_f) are the head's normalised (ReLU'd) features, ``weight`` the binary W;
    the prediction is the argmax of ``logits`` (default f·Wᵀ, the head without bias).
    """
    f = to_numpy(features, float)
    idx = _rows(weight)
    if f.ndim != 2 or f.shape[1] != to_numpy(weight, float).shape[1]:
        raise ValueError(f"features must be (samples, {to_numpy(weight, float).shape[1]}) to match "
                         f"W; got {f.shape}.")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values; check the model's outputs.")
    z = f @ to_numpy(weight, float).T if logits is None else to_numpy(logits, float)
    if z.shape != (len(f), len(idx)) or not np.isfinite(z).all():
        raise ValueError(f"logits must be finite, shape ({len(f)}, {len(idx)}); got {z.shape}.")
    vals = f[:, idx]  # (B, C, k), in ascending feature order
    order = np.argsort(-vals, axis=2, kind="stable")
    paths = np.take_along_axis(np.broadcast_to(idx, vals.shape), order, 2)
    values = np.take_along_axis(vals, order, 2)
    predicted = z.argmax(1)
    return Hierarchy(paths, values, predicted, shared_depth(paths, predicted))


def subtrees(paths: np.ndarray, member: int) -> np.ndarray:
    """(k + 1, C) boolean: the classes under each of ``member``'s ancestors, root (level 0) first.

    ``paths`` are one image's (C, k) paths; level j holds the classes whose first j steps equal
    ``member``'s.
    """
    depth = shared_depth(np.asarray(paths)[None], member)[0]
    return np.stack([depth >= j for j in range(np.asarray(paths).shape[1] + 1)])


def class_affinity(depth_to_true: np.ndarray, labels, n_classes: int) -> np.ndarray:
    """(C, C) global hierarchy: mean depth of class c′ on images of class c, symmetrised, / k.

    ``depth_to_true`` is :func:`shared_depth` against each image's true class.
    """
    y = to_numpy(labels, int).reshape(-1)
    D = np.zeros((n_classes, n_classes))
    for c in range(n_classes):
        if (y == c).any():
            D[c] = depth_to_true[y == c].mean(0)
    k = max(int(depth_to_true.max()), 1)
    return (D + D.T) / (2 * k)


def sibling_recovery(affinity: np.ndarray, superclass) -> tuple[float, float]:
    """(rate, chance): how often a class's closest class in the hierarchy is a true sibling.

    For every class, the classes of highest ``affinity`` (ties share the credit) are checked
    against ``superclass``; chance is the share of siblings among the other classes.
    """
    S = np.asarray(affinity, float)
    sup = to_numpy(superclass, int).reshape(-1)
    C = len(sup)
    if S.shape != (C, C):
        raise ValueError(f"affinity must be ({C}, {C}) for {C} superclass labels; got {S.shape}.")
    rate, chance = [], []
    for c in range(C):
        others = np.delete(np.arange(C), c)
        best = others[S[c, others] == S[c, others].max()]
        rate.append(np.mean(sup[best] == sup[c]))
        chance.append(np.mean(sup[others] == sup[c]))
    return float(np.mean(rate)), float(np.mean(chance))
