"""Bootstrap intervals for a statistic of a small sample (test images, clips): resample with
replacement, recompute, take the percentiles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["bootstrap_interval"]


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The percentile interval of ``statistic(indices)`` over ``n_boot`` resamples of ``range(n)``.

    ``statistic`` receives an index array (with repeats) and returns a number; pass it the same
    indices for both sides of a paired difference (two models on the same test images).
    """
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 samples, got {n}.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}.")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(int(n_boot))], float)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
