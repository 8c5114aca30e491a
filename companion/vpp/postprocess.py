"""VPP's post-processing: head outputs to per-frame detections (binary masks, scores, labels)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FramePrediction:
    """Detections in one frame: ``masks`` (n, H, W) bool, ``scores`` (n,), ``labels`` (n,)."""

    masks: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def postprocess(outputs: dict, image_size: int, score_threshold: float = 0.05) -> list[FramePrediction]:
    """Turn head outputs into per-frame detections (score = class probability × mask quality)."""
    probs = outputs["logits"].softmax(-1)[..., :-1]
    masks = F.interpolate(outputs["masks"], size=image_size, mode="bilinear", align_corners=False)
    out = []
    for b in range(probs.shape[0]):
        score, label = probs[b].max(-1)
        m = masks[b].sigmoid()
        binary = m > 0.5
        quality = (m * binary).flatten(1).sum(1) / binary.flatten(1).sum(1).clamp(min=1)
        score = score * quality
        keep = (score > score_threshold) & binary.flatten(1).any(1)
        order = score[keep].argsort(descending=True)
        out.append(FramePrediction(binary[keep][order].cpu(), score[keep][order].cpu(),
                                   label[keep][order].cpu()))
    return out
