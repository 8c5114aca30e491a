"""UncertainSAM's evaluation: the four correction panels and each ranking's relative AUC."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..metrics.uncertainty import CorrectionCurve, correction_curve, oracle_curve, relative_auc
from .heads import USAMHeads
from .records import USAMRecords

PANELS = ("model", "prompt", "task", "segmentation")


@dataclass(frozen=True)
class CorrectionResult:
    """Correction curves and relative AUCs per panel and method (the oracle included)."""

    curves: dict[str, dict[str, CorrectionCurve]]
    relative_auc: dict[str, dict[str, float]]

    def table(self) -> str:
        """Relative AUC (%) as a markdown table: methods as rows, panels as columns."""
        panels = list(self.relative_auc)
        methods = [m for m in next(iter(self.relative_auc.values())) if m != "oracle"]
        rows = ["| method | " + " | ".join(panels) + " |", "|---" * (len(panels) + 1) + "|"]
        for m in methods:
            cells = [f"{100 * self.relative_auc[p][m]:.1f}" if m in self.relative_auc[p] else "–"
                     for p in panels]
            rows.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


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
    curves, rel = {}, {}
    for panel, (current, refined, usam) in panels.items():
        oracle = oracle_curve(current, refined, ratios)
        if oracle.miou[-1] <= oracle.miou[0]:
            continue
        rankings = {"USAM": usam, "SamScore": 1 - own.sam_score, **baselines, "random": random}
        curves[panel] = {"oracle": oracle, **{k: correction_curve(current, refined, v, ratios)
                                              for k, v in rankings.items()}}
        rel[panel] = {k: relative_auc(c, oracle) for k, c in curves[panel].items()}
    return CorrectionResult(curves, rel)
