"""Bootstrap intervals for statistics of small samples (clips, scenes), resampled by group.

A statistic computed on a few clips (AP over ten videos, a relative AUC over a few hundred scenes)
moves when the sample does. :func:`bootstrap_interval` redraws the groups with replacement, recomputes
the statistic on the items of the drawn groups and returns the percentile interval. Items of one
group (the frames of a clip, the instances of a scene) are always drawn together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_interval", "mean_interval"]


@dataclass(frozen=True)
class Interval:
    """A statistic on the whole sample and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``, as :class:`companion.classify.Claim` takes an interval."""
        return self.low, self.high

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def format(self, spec: str = ".3f", scale: float = 1.0) -> str:
        """``"[low, high]"``, each value times ``scale`` in format ``spec``."""
        return f"[{self.low * scale:{spec}}, {self.high * scale:{spec}}]"


def _members(groups: int | Sequence[int] | np.ndarray) -> list[np.ndarray]:
    if isinstance(groups, (int, np.integer)):
        if groups < 2:
            raise ValueError(f"A bootstrap needs at least two items, got {groups}.")
        return [np.array([i]) for i in range(int(groups))]
    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"groups must be one label per item (1-D), got shape {labels.shape}.")
    _, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    if len(members) < 2:
        raise ValueError("A bootstrap needs at least two groups; all items carry one label.")
    return members


def bootstrap_interval(statistic: Callable[[np.ndarray], float],
                       groups: int | Sequence[int] | np.ndarray, *, n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile interval of ``statistic`` under resampling of groups with replacement.

    ``statistic(items)`` gets item indices (with repeats) and returns a number. ``groups`` is
    the number of independent items, or a group label per item (e.g. the clip of every frame).
    Resamples where the statistic is NaN (say, no object drawn) are left out.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10 resamples, got {n_boot}.")
    members = _members(groups)
    everything = np.concatenate(members)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), (int(n_boot), len(members)))
    values = np.array([statistic(np.concatenate([members[g] for g in row])) for row in draws],
                      dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        raise ValueError("The statistic was NaN on every resample.")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(statistic(np.sort(everything))), float(low), float(high), level)


def mean_interval(values: Sequence[float] | np.ndarray, *, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> Interval:
    """The bootstrap interval of the mean of per-sample ``values`` (per test image, per clip)."""
    x = np.asarray(values, dtype=float).reshape(-1)
    return bootstrap_interval(lambda idx: float(x[idx].mean()), len(x), n_boot=n_boot,
                              level=level, seed=seed)
