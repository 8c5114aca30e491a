"""What UncertainSAM's gaps are for: a model cascade, prompt refinement and pseudo-label filtering.

Each use ranks the predictions by a score and acts on a fraction of them:

* **cascade**: run the small segmenter, escalate to the large one where the predicted model gap
  is highest (:func:`cascade` is the deployable rule, a threshold on the predicted gap);
* **prompt refinement**: ask for one more click where the predicted prompt gap is highest;
* **pseudo-label filtering**: keep the masks with the lowest predicted task gap and count how
  many of the kept masks are good (precision).

"random" is the expected curve of a random order, computed exactly, so it carries no noise of
its own. :meth:`UseCurves.difference_interval` bootstraps the mean distance between two curves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..batches import to_numpy
from ..metrics.bootstrap import Interval, bootstrap_interval


@dataclass(frozen=True)
class UseCurves:
    """One curve per ranking over the fractions acted on; ``random`` is the expected one."""

    fractions: np.ndarray
    curves: dict[str, np.ndarray]
    _curve: Callable[[np.ndarray, np.ndarray | None], np.ndarray] = field(repr=False, compare=False)
    _rankings: dict[str, np.ndarray] = field(repr=False, compare=False)

    def at(self, method: str, fraction: float) -> float:
        """The curve of ``method`` at the grid point nearest ``fraction``."""
        return float(self.curves[method][np.abs(self.fractions - fraction).argmin()])

    def difference_interval(self, method: str, other: str = "random", *, groups=None,
                            n_boot: int = 1000, seed: int = 0) -> Interval:
        """Bootstrap interval of the mean (over the fractions) of ``method``'s curve minus ``other``'s.

        ``groups``: a label per prediction (its scene), resampled whole; None: one by one.
        """
        unknown = [m for m in (method, other) if m not in self.curves]
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}: choose from {', '.join(self.curves)}.")
        n = len(next(iter(self._rankings.values())))

        def stat(items: np.ndarray) -> float:
            a, b = (self._curve(items, self._rankings.get(m)) for m in (method, other))
            return float(np.mean(a - b))

        return bootstrap_interval(stat, n if groups is None else to_numpy(groups),
                                  n_boot=n_boot, seed=seed)


def _as_array(x, name: str, n: int | None = None) -> np.ndarray:
    a = to_numpy(x, dtype=float)
    if a.ndim != 1 or (n is not None and len(a) != n):
        want = "one value per prediction" + (f" ({n})" if n is not None else "")
        raise ValueError(f"{name} must be {want}, got shape {a.shape}.")
    if np.isnan(a).any():
        raise ValueError(f"{name} holds NaN values; rank only finite scores.")
    return a


def _fractions(fractions: Sequence[float] | None, default: np.ndarray) -> np.ndarray:
    f = default if fractions is None else np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) == 0 or (f < 0).any() or (f > 1).any():
        raise ValueError(f"fractions must be a list of numbers in [0, 1], got {fractions}.")
    return f


def _rankings(rankings: Mapping[str, torch.Tensor | np.ndarray], n: int) -> dict[str, np.ndarray]:
    if "random" in rankings:
        raise ValueError("'random' is added by the function (its expected curve); rename yours.")
    return {k: _as_array(v, f"ranking {k!r}", n) for k, v in rankings.items()}


def refinement_curves(current, refined, rankings: Mapping[str, torch.Tensor | np.ndarray], *,
                      fractions: Sequence[float] | None = None) -> UseCurves:
    """Mean IoU when the highest-ranked fraction of ``current`` IoUs is replaced by ``refined``.

    The cascade (``refined`` = the large model's IoU) and prompt refinement (``refined`` = the IoU
    with one more click). Higher ranking = acted on first.
    """
    cur = _as_array(current, "current")
    ref = _as_array(refined, "refined", len(cur))
    ranks = _rankings(rankings, len(cur))
    f = _fractions(fractions, np.linspace(0.0, 1.0, 21))

    def curve(items: np.ndarray, score: np.ndarray | None) -> np.ndarray:
        c, gain = cur[items], ref[items] - cur[items]
        if score is None:  # a random order, in expectation
            return c.mean() + f * gain.mean()
        ordered = np.concatenate([[0.0], np.cumsum(gain[np.argsort(-score[items], kind="stable")])])
        return (c.sum() + ordered[np.rint(f * len(items)).astype(int)]) / len(items)

    every = np.arange(len(cur))
    curves = {k: curve(every, v) for k, v in ranks.items()}
    curves["random"] = curve(every, None)
    return UseCurves(f, curves, curve, ranks)


def filtering_curves(iou, rankings: Mapping[str, torch.Tensor | np.ndarray], *,
                     good: float = 0.75, fractions: Sequence[float] | None = None) -> UseCurves:
    """Precision (share of masks with IoU ≥ ``good``) of the kept fraction, kept by ranking.

    Higher ranking = kept first; pass a confidence (the score) or a negated gap.
    """
    if not 0 < good <= 1:
        raise ValueError(f"good must be an IoU in (0, 1], got {good}.")
    ok = (_as_array(iou, "iou") >= good).astype(float)
    ranks = _rankings(rankings, len(ok))
    f = _fractions(fractions, np.linspace(0.1, 1.0, 19))
    if (f == 0).any():
        raise ValueError("fractions kept must be above 0: the precision of nothing is undefined.")

    def curve(items: np.ndarray, score: np.ndarray | None) -> np.ndarray:
        if score is None:
            return np.full(len(f), ok[items].mean())
        hits = np.cumsum(ok[items][np.argsort(-score[items], kind="stable")])
        kept = np.maximum(np.rint(f * len(items)).astype(int), 1)
        return hits[kept - 1] / kept

    every = np.arange(len(ok))
    curves = {k: curve(every, v) for k, v in ranks.items()}
    curves["random"] = curve(every, None)
    return UseCurves(f, curves, curve, ranks)


def cascade(predicted_gap, threshold: float) -> torch.Tensor:
    """The deployable cascade: escalate to the large model where the predicted gap ≥ ``threshold``.

    ``predicted_gap`` (M,) is USAM's Δ*_Θ (IoU points the large model is expected to add);
    ``threshold`` in [0, 1]. Returns a bool mask of the escalated predictions.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0 <= threshold <= 1:
        raise ValueError(f"the cascade threshold is a gap of IoU and must lie in [0, 1], got "
                         f"{threshold!r}: 0 escalates every prediction the large model is "
                         "expected to improve, 1 none.")
    return torch.as_tensor(_as_array(predicted_gap, "predicted_gap")) >= threshold
