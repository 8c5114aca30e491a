"""UncertainSAM's evaluation: the four correction panels and each ranking's relative AUC."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..batches import to_numpy
from ..metrics.bootstrap import Interval, bootstrap_interval
from ..metrics.uncertainty import CorrectionCurve, correction_curve, oracle_curve, relative_auc
from ..tables import Table
from .heads import USAMHeads
from .records import USAMRecords

PANELS = ("model", "prompt", "task", "segmentation")


@dataclass(frozen=True)
class CorrectionResult:
    """Correction curves and relative AUCs per panel and method (the oracle included)."""

    curves: dict[str, dict[str, CorrectionCurve]]
    relative_auc: dict[str, dict[str, float]]
    # per panel: (current IoUs, refined IoUs, {method: ranking score}), for the bootstrap
    inputs: dict = field(default_factory=dict, repr=False, compare=False)

    def table(self) -> Table:
        """Relative AUC (%): methods as rows, panels as columns (HTML in Jupyter)."""
        panels = list(self.relative_auc)
        methods = [m for m in next(iter(self.relative_auc.values())) if m != "oracle"]
        rows = [[m] + [f"{100 * self.relative_auc[p][m]:.1f}" if m in self.relative_auc[p]
                       else "–" for p in panels] for m in methods]
        return Table.of(["method", *panels], rows, caption="relative AUC (%)")

    def difference_interval(self, panel: str, method: str, other: str | None = None, *,
                            groups=None, n_boot: int = 1000, seed: int = 0) -> Interval:
        """Bootstrap interval of the relative AUC of ``method`` (minus ``other``'s) on ``panel``.

        ``groups``: a group label per prediction (the scene of each instance), resampled whole;
        None resamples the predictions one by one.
        """
        if panel not in self.inputs:
            raise ValueError(f"No panel {panel!r} here: choose one of {', '.join(self.inputs)}.")
        current, refined, rankings = self.inputs[panel]
        unknown = [m for m in (method, other) if m is not None and m not in rankings]
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}: choose from {', '.join(rankings)}.")
        ratios = self.curves[panel]["oracle"].ratios

        def stat(items: np.ndarray) -> float:
            oracle = oracle_curve(current[items], refined[items], ratios)
            if oracle.miou[-1] <= oracle.miou[0]:
                return float("nan")
            value = relative_auc(correction_curve(current[items], refined[items],
                                                  rankings[method][items], ratios), oracle)
            if other is not None:
                value -= relative_auc(correction_curve(current[items], refined[items],
                                                       rankings[other][items], ratios), oracle)
            return value

        return bootstrap_interval(stat, len(current) if groups is None else to_numpy(groups),
                                  n_boot=n_boot, seed=seed)


def evaluate_corrections(records: USAMRecords, heads: USAMHeads,
                         baselines: Mapping[str, torch.Tensor], size: str, *,
                         ratios: Sequence[float] | None = None, seed: int = 0) -> CorrectionResult:
    """The paper's four correction panels for segmenter ``size`` (Fig. 5).

    model: IoU_θ → IoU of the largest size; prompt: IoU_θ → IoU_xP*; task: IoU_SAM → IoU_θ;
    segmentation: IoU_θ → 1 (the ground truth). Rankings: USAM's head for the panel (for the
    model panel of a size other than the smallest, the difference of two IoU heads), the
    segmenter's own score (1 − s), every baseline entropy, and a random order. A panel where the
    refinement never helps (for the largest size, the model panel) is left out.
    """
    records._check_size(size)
    own = records.single[size]
    pred = heads.predict_chosen(own)
    n = len(own.scores)
    largest = records.sizes[-1]
    # Δ*_Θ is trained as IoU_large − IoU_smallest; for another size use Δ_Θ = USAM_L − USAM_θ
    model_gap = pred["model_gap"] if size == records.sizes[0] else \
        pred[f"iou_{largest}"] - pred[f"iou_{size}"]
    panels = {
        "model": (own.iou_best, records.single[largest].iou_best, model_gap),
        "prompt": (own.iou_best, records.dense[size].iou_best, pred["prompt_gap"]),
        "task": (own.iou_sam, own.iou_best, pred["task_gap"]),
        "segmentation": (own.iou_best, torch.ones(n), 1 - pred[f"iou_{size}"]),
    }
    random = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    curves, rel, inputs = {}, {}, {}
    for panel, (current, refined, usam) in panels.items():
        oracle = oracle_curve(current, refined, ratios)
        if oracle.miou[-1] <= oracle.miou[0]:
            continue
        rankings = {"USAM": usam, "SamScore": 1 - own.sam_score, **baselines, "random": random}
        curves[panel] = {"oracle": oracle, **{k: correction_curve(current, refined, v, ratios)
                                              for k, v in rankings.items()}}
        rel[panel] = {k: relative_auc(c, oracle) for k, c in curves[panel].items()}
        inputs[panel] = (to_numpy(current, dtype=float), to_numpy(refined, dtype=float),
                         {k: to_numpy(v, dtype=float) for k, v in rankings.items()})
    return CorrectionResult(curves, rel, inputs)


@dataclass(frozen=True)
class MaskSpread:
    """How much the predicted and the true targets differ between the three masks of a click."""

    predicted: dict[str, float]  # mean over clicks of max − min over the masks
    true: dict[str, float]
    picks_best: dict[str, float]  # share of clicks whose pick is the best of the three masks

    def table(self) -> Table:
        rows = [[n, f"{self.predicted[n]:.3f}", f"{self.true[n]:.3f}"] for n in self.predicted]
        return Table.of(["target", "predicted spread", "true spread"], rows,
                        caption="mean over clicks of max − min over the three masks")


def mask_spread(records: USAMRecords, heads: USAMHeads, size: str) -> MaskSpread:
    """The spread over the three masks of every click of each gap, predicted and true.

    The true model and prompt gaps belong to the instance (best of three against best of three),
    so their true spread is zero; the task gap IoU_θ − IoU_j and the IoU of mask j differ by mask.
    ``picks_best``: how often the score, and the task head (smallest predicted gap), pick the
    mask with the highest IoU.
    """
    records._check_size(size)
    own = records.single[size]
    with torch.inference_mode():
        pred = heads.predict(own.iou_token, own.mask_tokens)
    true = records.mask_targets(size)
    names = [n for n in ("model_gap", "prompt_gap", "task_gap", "iou_sam") if n in pred]

    def spread(x: torch.Tensor) -> float:
        return float((x.max(1).values - x.min(1).values).mean())

    best = own.ious.argmax(1)
    picks = {"SamScore": float((own.chosen == best).float().mean()),
             "USAM task head": float((pred["task_gap"].argmin(1) == best).float().mean())}
    return MaskSpread({n: spread(pred[n]) for n in names}, {n: spread(true[n]) for n in names},
                      picks)
