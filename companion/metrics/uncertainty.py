"""Uncertainty metrics: mask entropies, correction curves, relative AUC and correlations.

Correction curve (the paper's Fig. 5): rank predictions by an uncertainty score, replace the most
uncertain fraction r ∈ [0, r_max] by a refined alternative (a larger model, a denser prompt, the
best of the three masks, the ground truth) and plot the mean IoU against r. The oracle ranks by
the true gain. Relative AUC = area gained over the uncorrected mIoU, divided by the oracle's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..batches import to_numpy
from ..tables import Table

EPS = 1e-6


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """h(p) = −p log₂ p − (1−p) log₂(1−p), elementwise, with p clipped to [1e-6, 1−1e-6]."""
    p = p.clamp(EPS, 1 - EPS)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


def mask_entropy(prob: torch.Tensor) -> torch.Tensor:
    """H(P) = Σ_u P_u h(P_u) / Σ_u P_u: foreground-weighted mean entropy of (…, H, W) maps."""
    if prob.ndim < 2:
        raise ValueError(f"expected probability maps of shape (..., H, W), got {tuple(prob.shape)}.")
    if prob.numel() and (prob.min() < 0 or prob.max() > 1):
        raise ValueError("mask_entropy expects probabilities in [0, 1]; apply a sigmoid to logits.")
    p = prob.clamp(EPS, 1 - EPS)
    return (p * binary_entropy(p)).sum((-2, -1)) / p.sum((-2, -1))


def _as_1d(x, name: str) -> np.ndarray:
    a = to_numpy(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one value per prediction (1-D), got shape {a.shape}.")
    return a


@dataclass(frozen=True)
class CorrectionCurve:
    """Mean IoU after correcting the most uncertain fraction ``ratios`` of the predictions."""

    ratios: np.ndarray
    miou: np.ndarray


def correction_curve(current, refined, uncertainty, ratios: Sequence[float] | None = None
                     ) -> CorrectionCurve:
    """mIoU when the ⌊r·n⌉ most uncertain ``current`` IoUs are replaced by ``refined`` IoUs.

    Ties in ``uncertainty`` are broken by position (stable sort), so a constant score corrects the
    first predictions in order.
    """
    cur, ref, unc = (_as_1d(x, n) for x, n in ((current, "current"), (refined, "refined"),
                                               (uncertainty, "uncertainty")))
    if not len(cur) == len(ref) == len(unc):
        raise ValueError(f"current, refined and uncertainty must have the same length, got "
                         f"{len(cur)}, {len(ref)} and {len(unc)}.")
    if len(cur) == 0:
        raise ValueError("correction_curve needs at least one prediction.")
    if np.isnan(unc).any():
        raise ValueError("uncertainty holds NaN values; rank only finite scores.")
    ratios = np.linspace(0.0, 0.5, 21) if ratios is None else np.asarray(ratios, dtype=float)
    if ratios.ndim != 1 or (ratios < 0).any() or (ratios > 1).any():
        raise ValueError(f"ratios must be fractions in [0, 1], got {ratios}.")
    order = np.argsort(-unc, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((ref - cur)[order])])
    counts = np.rint(ratios * len(cur)).astype(int)
    return CorrectionCurve(ratios, (cur.sum() + gain[counts]) / len(cur))


def oracle_curve(current, refined, ratios: Sequence[float] | None = None) -> CorrectionCurve:
    """The best possible ranking: by the true gain ``refined − current``."""
    cur, ref = _as_1d(current, "current"), _as_1d(refined, "refined")
    return correction_curve(cur, ref, ref - cur, ratios)


def relative_auc(curve: CorrectionCurve, oracle: CorrectionCurve) -> float:
    """∫(m(r) − m(0)) dr / ∫(o(r) − o(0)) dr: the share of the oracle's gain a ranking achieves."""
    if not np.array_equal(curve.ratios, oracle.ratios):
        raise ValueError("curve and oracle must be evaluated at the same ratios.")
    base = oracle.miou[0]
    denom = np.trapezoid(oracle.miou - base, oracle.ratios)
    if denom <= 0:
        raise ValueError("the oracle gains nothing (refined is never better than current); "
                         "relative AUC is undefined.")
    return float(np.trapezoid(curve.miou - base, curve.ratios) / denom)


@dataclass(frozen=True)
class PearsonTable:
    """Pearson correlation between every pair of named columns."""

    names: tuple[str, ...]
    matrix: np.ndarray

    def __getitem__(self, key: tuple[str, str]) -> float:
        i, j = (self.names.index(k) for k in key)
        return float(self.matrix[i, j])

    def table(self, digits: int = 2) -> Table:
        """The matrix as a table (HTML in Jupyter)."""
        rows = [[n, *(f"{v:.{digits}f}" for v in row)]
                for n, row in zip(self.names, self.matrix, strict=True)]
        return Table.of(["", *self.names], rows)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table())


def pearson_table(columns: Mapping[str, Sequence[float] | torch.Tensor]) -> PearsonTable:
    """Pearson's r between all columns (each one value per prediction)."""
    if len(columns) < 2:
        raise ValueError("pearson_table needs at least two columns.")
    arrays = [_as_1d(v, k) for k, v in columns.items()]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"all columns must have the same length, got "
                         f"{ {k: len(a) for k, a in zip(columns, arrays, strict=True)} }.")
    if len(arrays[0]) < 2:
        raise ValueError("Pearson correlation needs at least two predictions.")
    flat = [k for k, a in zip(columns, arrays, strict=True) if np.ptp(a) == 0]
    if flat:
        raise ValueError(f"columns {flat} are constant: their correlation is undefined.")
    return PearsonTable(tuple(columns), np.corrcoef(np.stack(arrays)))
