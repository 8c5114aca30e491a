"""Instance segmentation metrics: mask IoU, COCO mask AP per frame and YouTube-VIS-style video AP.

Frame AP is pycocotools' ``segm`` evaluation on every frame as an image. Video AP runs the same
COCO matching and 101-point precision averaging on whole tracks, with the spatio-temporal IoU
Σ_t |P_t ∩ G_t| / Σ_t |P_t ∪ G_t| of the YouTube-VIS benchmark. Both keep COCO's per-item
matches, so :meth:`APResult.resampled` recomputes the AP on any multiset of the items (a
bootstrap over clips) without matching again.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    # per item, per category: COCO's matches (scores, matched (T, D), ignored (T, D), ground truth)
    matches: tuple = field(default=(), repr=False, compare=False)

    def resampled(self, items) -> APResult:
        """The AP over ``items`` (item indices, repeats allowed), from the stored matches."""
        if not self.matches:
            raise ValueError("This APResult holds no per-item matches; compute it with mask_ap "
                             "or video_ap.")
        items = np.asarray(items, dtype=int).reshape(-1)
        if len(items) and (items.min() < 0 or items.max() >= len(self.matches)):
            raise ValueError(f"items must index the {len(self.matches)} items, got "
                             f"{items.min()}..{items.max()}.")
        cats = sorted({c for item in self.matches for c in item})
        precision = np.full((len(_IOU_THRESHOLDS), len(_RECALL_THRESHOLDS), max(len(cats), 1)), -1.0)
        for k, cat in enumerate(cats):
            entries = [self.matches[i][cat] for i in items if cat in self.matches[i]]
            precision[:, :, k] = _precision(entries)
        return _ap_from_precision(precision, len(items), sum(
            int(e[3]) for i in items for e in self.matches[i].values()))


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


_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def _precision(entries: list) -> np.ndarray:
    """COCO's interpolated precision (IoU thresholds, recall thresholds) of one category, from
    per-item (scores, matched, ignored, ground truth) entries; −1 where there is no ground truth."""
    n_gt = sum(int(e[3]) for e in entries)
    out = np.full((len(_IOU_THRESHOLDS), len(_RECALL_THRESHOLDS)), -1.0)
    if n_gt == 0:
        return out
    scores = np.concatenate([e[0] for e in entries]) if entries else np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e[1] for e in entries], axis=1)[:, order]
    ignored = np.concatenate([e[2] for e in entries], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(float)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(float)
    out[:] = 0.0
    for t in range(len(_IOU_THRESHOLDS)):
        if tp.shape[1] == 0:
            continue
        recall = tp[t] / n_gt
        prec = np.maximum.accumulate((tp[t] / (fp[t] + tp[t] + np.spacing(1)))[::-1])[::-1]
        where = np.searchsorted(recall, _RECALL_THRESHOLDS, side="left")
        ok = where < len(prec)
        out[t, ok] = prec[where[ok]]
    return out


def _ap_from_precision(precision: np.ndarray, n_items: int, n_objects: int,
                       matches: tuple = ()) -> APResult:
    def mean(p: np.ndarray) -> float:
        p = p[p > -1]
        return float(p.mean()) if p.size else float("nan")

    return APResult(mean(precision), mean(precision[0]), mean(precision[5]), n_items, n_objects,
                    matches)


def _summarise(evaluator: COCOeval, n_items: int, n_objects: int) -> APResult:
    evaluator.params.areaRng = [[0, 1e10]]
    evaluator.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class) at maxDets 100
    p = evaluator.params
    max_det = p.maxDets[-1]
    matches = tuple({} for _ in p.imgIds)
    for k, cat in enumerate(p.catIds):
        for i in range(len(p.imgIds)):
            e = evaluator.evalImgs[k * len(p.imgIds) + i]
            if e is not None:
                matches[i][cat] = (np.asarray(e["dtScores"][:max_det], dtype=float),
                                   e["dtMatches"][:, :max_det] > 0,
                                   e["dtIgnore"][:, :max_det].astype(bool),
                                   int((e["gtIgnore"] == 0).sum()))
    return _ap_from_precision(precision, n_items, n_objects, matches)


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
