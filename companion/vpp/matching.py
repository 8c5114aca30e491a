"""VPP's training loss: Hungarian matching of queries to objects, Mask2Former loss per layer."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .segmenter import VideoSegmenter

# Loss weights of the Mask2Former head used by VPP/ROVIS: class 2, mask BCE 5, Dice 5.
CLASS_WEIGHT, BCE_WEIGHT, DICE_WEIGHT, NO_OBJECT_WEIGHT = 2.0, 5.0, 5.0, 0.1


def _pairwise_mask_costs(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE and Dice loss between every predicted (Q, P) and target (G, P) mask."""
    p = pred.sigmoid()
    pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
    bce = (pos @ target.T + neg @ (1 - target).T) / pred.shape[1]
    dice = 1 - (2 * p @ target.T + 1) / (p.sum(1)[:, None] + target.sum(1)[None, :] + 1)
    return bce, dice


def hungarian_match(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Optimal query → object assignment for one frame (cost 2·class + 5·BCE + 5·Dice).

    ``logits`` (Q, C+1), ``masks`` (Q, P) logits, ``labels`` (G,), ``target_masks`` (G, P) in [0, 1].
    Returns (query indices, object indices).
    """
    if labels.numel() == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    with torch.no_grad():
        bce, dice = _pairwise_mask_costs(masks.float(), target_masks.float())
        cost = -CLASS_WEIGHT * logits.float().softmax(-1)[:, labels] + BCE_WEIGHT * bce + DICE_WEIGHT * dice
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols


def frame_targets(masks: torch.Tensor, labels: torch.Tensor,
                  size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per frame (labels (G,), masks (G, size·size) in [0, 1]) of the objects visible in it.

    ``masks`` (B, K, H, W) bool, ``labels`` (B, K) with -1 for empty slots.
    """
    small = F.adaptive_avg_pool2d(masks.float(), size).flatten(2)
    out = []
    for b in range(masks.shape[0]):
        keep = (labels[b] >= 0) & masks[b].flatten(1).any(1)
        out.append((labels[b][keep], small[b][keep]))
    return out


def matching_loss(outputs: dict, masks: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mask2Former loss on every decoder layer: 2·CE (no-object 0.1) + 5·BCE + 5·Dice, matched."""
    logits, pred = outputs["logits"], outputs["masks"]
    targets = frame_targets(masks.to(pred.device), labels.to(pred.device), pred.shape[-1])
    num_classes = logits.shape[-1] - 1
    weight = torch.ones(num_classes + 1, device=logits.device)
    weight[-1] = NO_OBJECT_WEIGHT
    n_obj = max(1, sum(len(t[0]) for t in targets))
    parts = {"class": 0.0, "bce": 0.0, "dice": 0.0}
    total = logits.new_zeros(())
    for lg, mk in [*outputs["aux"], (logits, pred)]:
        mk = mk.flatten(2)
        cls_target = torch.full(lg.shape[:2], num_classes, dtype=torch.long, device=lg.device)
        matched_pred, matched_true = [], []
        for b, (lab, tm) in enumerate(targets):
            rows, cols = hungarian_match(lg[b], mk[b], lab, tm)
            cls_target[b, rows] = lab[cols]
            matched_pred.append(mk[b, rows]), matched_true.append(tm[cols])
        ce = F.cross_entropy(lg.flatten(0, 1), cls_target.flatten(), weight=weight)
        mp, mt = torch.cat(matched_pred), torch.cat(matched_true)
        bce = F.binary_cross_entropy_with_logits(mp, mt, reduction="none").mean(1).sum() / n_obj
        p = mp.sigmoid()
        dice = (1 - (2 * (p * mt).sum(1) + 1) / (p.sum(1) + mt.sum(1) + 1)).sum() / n_obj
        total = total + CLASS_WEIGHT * ce + BCE_WEIGHT * bce + DICE_WEIGHT * dice
        parts = {"class": ce.item(), "bce": bce.item(), "dice": dice.item()}
    return total, parts


def frame_loss(model: VideoSegmenter, batch: dict) -> tuple[torch.Tensor, dict]:
    """Dense training loss on a batch of frames ``{"image", "masks", "labels"}``."""
    return matching_loss(model(batch["image"]), batch["masks"], batch["labels"])
