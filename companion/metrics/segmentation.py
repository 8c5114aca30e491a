"""Instance segmentation metrics: mask IoU, COCO mask AP per frame and YouTube-VIS-style video AP.

Frame AP is pycocotools' ``segm`` evaluation on every frame as an image. Video AP runs the same
COCO matching and 101-point precision averaging on whole tracks, with the spatio-temporal IoU
Σ_t |P_t ∩ G_t| / Σ_t |P_t ∪ G_t| of the YouTube-VIS benchmark.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..batches import to_numpy


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks ``pred`` and ``target`` (…, H, W), broadcast; 1 where both are empty."""
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).flatten(-2).sum(-1).float()
    union = (pred | target).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass(frozen=True)
class APResult:
    """COCO average precision: ``ap`` (IoU 0.5:0.95), ``ap50``, ``ap75``; NaN without objects."""

    ap: float
    ap50: float
    ap75: float
    n_items: int
    n_objects: int


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _check_lengths(**lists) -> int:
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Predictions and ground truth must list the same items, got lengths "
                         f"{lengths}.")
    return next(iter(lengths.values()))


def _categories(*label_lists) -> list[dict]:
    ids = sorted({int(c) for labels in label_lists for lab in labels for c in to_numpy(lab).ravel()})
    return [{"id": c + 1, "name": str(c)} for c in ids]


def _summarise(evaluator: COCOeval, n_items: int, n_objects: int) -> APResult:
    evaluator.params.areaRng = [[0, 1e10]]
    evaluator.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class) at maxDets 100

    def mean(p: np.ndarray) -> float:
        p = p[p > -1]
        return float(p.mean()) if p.size else float("nan")

    return APResult(mean(precision), mean(precision[0]), mean(precision[5]), n_items, n_objects)


def _coco(images: list[dict], annotations: list[dict], categories: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def mask_ap(pred_masks: Sequence, pred_scores: Sequence, pred_labels: Sequence,
            gt_masks: Sequence, gt_labels: Sequence) -> APResult:
    """COCO mask AP over frames, each frame an image.

    Per frame: ``pred_masks`` (n, H, W) bool, ``pred_scores`` (n,), ``pred_labels`` (n,),
    ``gt_masks`` (g, H, W) bool, ``gt_labels`` (g,). Empty ground-truth masks are ignored.
    """
    n = _check_lengths(pred_masks=pred_masks, pred_scores=pred_scores, pred_labels=pred_labels,
                       gt_masks=gt_masks, gt_labels=gt_labels)
    images, gts, dts = [], [], []
    for i in range(n):
        gm, gl = to_numpy(gt_masks[i]).astype(bool), to_numpy(gt_labels[i])
        pm, ps, pl = to_numpy(pred_masks[i]).astype(bool), to_numpy(pred_scores[i]), to_numpy(pred_labels[i])
        if gm.ndim != 3 or pm.ndim != 3 or (len(pm) and pm.shape[1:] != gm.shape[1:]):
            raise ValueError(f"Frame {i}: masks must be (n, H, W) of one size, got predictions "
                             f"{pm.shape} and ground truth {gm.shape}.")
        images.append({"id": i + 1, "height": gm.shape[1], "width": gm.shape[2]})
        for m, c in zip(gm, gl, strict=True):
            if m.any():
                rle = _rle(m)
                gts.append({"id": len(gts) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                            "segmentation": rle, "area": float(m.sum()),
                            "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
        for m, s, c in zip(pm, ps, pl, strict=True):
            rle = _rle(m)
            dts.append({"id": len(dts) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                        "segmentation": rle, "area": float(m.sum()), "score": float(s),
                        "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
    cats = _categories(gt_labels, pred_labels)
    if not gts:
        return APResult(float("nan"), float("nan"), float("nan"), n, 0)
    evaluator = COCOeval(_coco(images, gts, cats), _coco(images, dts, cats), iouType="segm")
    return _summarise(evaluator, n, len(gts))


class _VideoEval(COCOeval):
    """COCOeval whose IoU is the spatio-temporal IoU of whole tracks."""

    def __init__(self, gt: COCO, dt: COCO, gt_tracks: dict, dt_tracks: dict):
        super().__init__(gt, dt, iouType="bbox")
        self.gt_tracks, self.dt_tracks = gt_tracks, dt_tracks

    def computeIoU(self, imgId, catId):  # noqa: N802 (pycocotools' name)
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if not gt or not dt:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][: self.params.maxDets[-1]]
        P = np.stack([self.dt_tracks[d["id"]] for d in dt]).reshape(len(dt), -1).astype(np.float64)
        G = np.stack([self.gt_tracks[g["id"]] for g in gt]).reshape(len(gt), -1).astype(np.float64)
        inter = P @ G.T
        union = P.sum(1)[:, None] + G.sum(1)[None, :] - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def video_ap(pred_masks: Sequence, pred_scores: Sequence, pred_labels: Sequence,
             gt_masks: Sequence, gt_labels: Sequence) -> APResult:
    """Video AP with spatio-temporal IoU (YouTube-VIS style), one entry per clip.

    Per clip: ``pred_masks`` (T, n, H, W) bool tracks, ``pred_scores`` (n,), ``pred_labels``
    (n,), ``gt_masks`` (T, g, H, W) bool, ``gt_labels`` (g,). Objects never visible are ignored.
    """
    n = _check_lengths(pred_masks=pred_masks, pred_scores=pred_scores, pred_labels=pred_labels,
                       gt_masks=gt_masks, gt_labels=gt_labels)
    images, gts, dts, gt_tracks, dt_tracks = [], [], [], {}, {}
    for i in range(n):
        gm, gl = to_numpy(gt_masks[i]).astype(bool), to_numpy(gt_labels[i])
        pm, ps, pl = to_numpy(pred_masks[i]).astype(bool), to_numpy(pred_scores[i]), to_numpy(pred_labels[i])
        if gm.ndim != 4 or pm.ndim != 4 or pm.shape[0] != gm.shape[0] or pm.shape[2:] != gm.shape[2:]:
            raise ValueError(f"Clip {i}: tracks must be (T, n, H, W) with the same T, H, W, got "
                             f"predictions {pm.shape} and ground truth {gm.shape}.")
        images.append({"id": i + 1})
        for k, c in enumerate(gl):
            track = gm[:, k]
            if track.any():
                gts.append({"id": len(gts) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                            "area": float(track.sum()) / track.shape[0], "iscrowd": 0})
                gt_tracks[len(gts)] = track
        for k, (s, c) in enumerate(zip(ps, pl, strict=True)):
            dts.append({"id": len(dts) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                        "area": float(pm[:, k].sum()) / pm.shape[0], "score": float(s), "iscrowd": 0})
            dt_tracks[len(dts)] = pm[:, k]
    cats = _categories(gt_labels, pred_labels)
    if not gts:
        return APResult(float("nan"), float("nan"), float("nan"), n, 0)
    evaluator = _VideoEval(_coco(images, gts, cats), _coco(images, dts, cats), gt_tracks, dt_tracks)
    return _summarise(evaluator, n, len(gts))
