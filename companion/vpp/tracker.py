"""VPP's tracker: detections linked across a clip's frames by Hungarian matching on mask IoU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..batches import to_numpy
from ..metrics.segmentation import mask_iou
from .postprocess import FramePrediction


@dataclass(frozen=True)
class VideoPrediction:
    """Tracks of a clip: ``masks`` (T, n, H, W) bool, ``scores`` (n,), ``labels`` (n,)."""

    masks: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def track(frames: list[FramePrediction], iou_threshold: float = 0.2, max_gap: int = 3,
          min_score: float = 0.3) -> VideoPrediction:
    """Link detections across frames by Hungarian matching on mask IoU with live tracks.

    A detection with score ≥ ``min_score`` that matches no track starts one; a track unseen for
    more than ``max_gap`` frames ends. A track's score is its mean detection score and its label the
    score-weighted majority.
    """
    if not frames:
        raise ValueError("track() needs at least one frame of detections.")
    T = len(frames)
    shape = frames[0].masks.shape[-2:]
    tracks: list[dict] = []
    for t, det in enumerate(frames):
        if det.masks.shape[-2:] != shape:
            raise ValueError(f"Frame {t} has masks of size {tuple(det.masks.shape[-2:])}, "
                             f"frame 0 of size {tuple(shape)}: all frames of a clip must match.")
        live = [k for k, tr in enumerate(tracks) if t - tr["last"] <= max_gap]
        used = set()
        if live and len(det.scores):
            last = torch.stack([tracks[k]["masks"][tracks[k]["last"]] for k in live])
            iou = to_numpy(mask_iou(last[:, None], det.masks[None]))
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= iou_threshold:
                    tr = tracks[live[r]]
                    tr["masks"][t], tr["last"] = det.masks[c], t
                    tr["scores"].append(float(det.scores[c])), tr["labels"].append(int(det.labels[c]))
                    used.add(int(c))
        for c in range(len(det.scores)):
            if c not in used and det.scores[c] >= min_score:
                tracks.append({"masks": {t: det.masks[c]}, "last": t, "scores": [float(det.scores[c])],
                               "labels": [int(det.labels[c])]})
    masks = torch.zeros(T, len(tracks), *shape, dtype=torch.bool)
    scores, labels = torch.zeros(len(tracks)), torch.zeros(len(tracks), dtype=torch.long)
    for k, tr in enumerate(tracks):
        for t, m in tr["masks"].items():
            masks[t, k] = m
        scores[k] = float(np.mean(tr["scores"]))
        votes: dict[int, float] = {}
        for lab, s in zip(tr["labels"], tr["scores"], strict=True):
            votes[lab] = votes.get(lab, 0.0) + s
        labels[k] = max(votes, key=votes.get)
    return VideoPrediction(masks, scores, labels)
