"""Probes of frozen features: linear, few-shot and k-NN classifiers fitted on top of them.

A backbone's features "carry structure" when simple classifiers on them beat the same
classifiers on the same architecture with random weights and on raw pixels.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..batches import to_numpy

__all__ = ["few_shot_indices", "probe_scores"]


def _linear(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(train_x, train_y).predict(test_x)


def few_shot_indices(labels, shots: int, seed: int = 0) -> np.ndarray:
    """``shots`` random training indices of every class (seeded), sorted."""
    y = to_numpy(labels, int).reshape(-1)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if len(members) < shots:
            raise ValueError(f"class {c} has {len(members)} training samples, fewer than "
                             f"shots={shots}.")
        picked.append(rng.choice(members, shots, replace=False))
    return np.sort(np.concatenate(picked))


def probe_scores(train_x, train_y, test_x, test_y, *, shots: int = 10, draws: int = 3,
                 k: int = 20, seed: int = 0) -> dict[str, float]:
    """Test accuracy of a linear probe, a ``shots``-shot linear probe (mean of ``draws``) and k-NN.

    Features are flattened per sample; the linear probes standardise them, k-NN uses cosine
    distance. The fits run on one BLAS thread: at these sizes (a few thousand samples, a few
    hundred features) threads cost more than they save.
    """
    xa, xb = (to_numpy(v, float).reshape(len(v), -1) for v in (train_x, test_x))
    ya, yb = to_numpy(train_y, int).reshape(-1), to_numpy(test_y, int).reshape(-1)
    if xa.shape[1] != xb.shape[1] or len(xa) != len(ya) or len(xb) != len(yb):
        raise ValueError(f"train and test features must have the same width and one label per "
                         f"sample; got {xa.shape}, {len(ya)} labels and {xb.shape}, {len(yb)}.")
    k = min(int(k), len(xa))
    with threadpool_limits(limits=1):
        linear = float((_linear(xa, ya, xb) == yb).mean())
        few = [float((_linear(xa[i], ya[i], xb) == yb).mean())
               for i in (few_shot_indices(ya, shots, seed + d) for d in range(draws))]
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(xa, ya)
        nearest = float((knn.predict(xb) == yb).mean())
    return {"linear": linear, f"{shots}-shot": float(np.mean(few)), f"{k}-NN": nearest}
