"""VPP's evaluation: frame AP, video AP of tracked clips and kept tokens per layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.moving_shapes import MovingShapes
from ..metrics.bootstrap import Interval, bootstrap_interval
from ..metrics.efficiency import keep_ratio_per_layer
from ..metrics.segmentation import APResult, mask_ap, video_ap
from .postprocess import FramePrediction, postprocess
from .tracker import track


class ClipModel(Protocol):
    """A model that runs a clip: head outputs per frame and the tokens each block kept."""

    def eval(self) -> object: ...

    def run_clip(self, frames: torch.Tensor, **options) -> tuple[list[dict], torch.Tensor]: ...


@dataclass(frozen=True)
class ClipEvaluation:
    """Accuracy and kept tokens of a model over clips."""

    frame_ap: APResult            # COCO mask AP over all frames
    video_ap: APResult            # spatio-temporal AP over tracked clips
    keep_per_layer: torch.Tensor  # (depth,) fraction of tokens each block processed
    pkr: float                    # mean of keep_per_layer
    clip_of_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False,
                                      compare=False)  # the clip of every evaluated frame


def ap_difference_interval(a: ClipEvaluation, b: ClipEvaluation | None = None, *,
                           video: bool = False, n_boot: int = 1000, seed: int = 0) -> Interval:
    """Bootstrap interval over clips of ``a``'s AP minus ``b``'s (or of ``a``'s AP alone).

    Both evaluations must cover the same clips; a resample draws whole clips (all their frames)
    with replacement and recomputes both APs from COCO's stored matches. ``video=True`` compares
    video AP instead of frame AP.
    """
    clips = a.clip_of_frame
    if b is not None and not np.array_equal(clips, b.clip_of_frame):
        raise ValueError("The two evaluations cover different clips or frames; evaluate both "
                         "models on the same data.")
    n_clips = int(clips.max()) + 1 if len(clips) else 0
    members = [np.flatnonzero(clips == c) for c in range(n_clips)]

    def ap(ev: ClipEvaluation, drawn: np.ndarray) -> float:
        if video:
            return ev.video_ap.resampled(drawn).ap
        return ev.frame_ap.resampled(np.concatenate([members[c] for c in drawn])).ap

    def stat(drawn: np.ndarray) -> float:
        return ap(a, drawn) - (0.0 if b is None else ap(b, drawn))

    return bootstrap_interval(stat, n_clips, n_boot=n_boot, seed=seed)


def evaluate_clips(model: ClipModel, data: MovingShapes, *, class_agnostic: bool = False,
                   progress: bool = True, **run_options) -> ClipEvaluation:
    """Frame AP, video AP and kept-token ratios of ``model`` on every clip of ``data``.

    ``run_options`` go to ``model.run_clip`` (a pruned segmenter's ``mode``, ``schedule``, ``topk``);
    ``class_agnostic=True`` merges all classes into one, so that only the masks (and tracks) count.
    """
    model.eval()
    frame_preds, frame_gt, video_preds, video_gt, keeps, clip_of = [], [], [], [], [], []
    for v in tqdm(range(len(data)), desc="evaluate", disable=not progress, leave=False):
        clip = data.clip(v)
        outputs, keep = model.run_clip(clip["frames"], **run_options)
        preds = [postprocess(o, data.image_size)[0] for o in outputs]
        if class_agnostic:
            preds = [FramePrediction(p.masks, p.scores, torch.zeros_like(p.labels)) for p in preds]
        valid = clip["labels"] >= 0
        labels = clip["labels"][valid] * (0 if class_agnostic else 1)
        frame_preds += preds
        frame_gt += [(clip["masks"][t][valid], labels) for t in range(len(preds))]
        clip_of += [v] * len(preds)
        video_preds.append(track(preds))
        video_gt.append((clip["masks"][:, valid], labels))
        keeps.append(keep)
    frame = mask_ap([p.masks for p in frame_preds], [p.scores for p in frame_preds],
                    [p.labels for p in frame_preds], [g[0] for g in frame_gt], [g[1] for g in frame_gt])
    video = video_ap([p.masks for p in video_preds], [p.scores for p in video_preds],
                     [p.labels for p in video_preds], [g[0] for g in video_gt], [g[1] for g in video_gt])
    per_layer = keep_ratio_per_layer(torch.cat(keeps))
    return ClipEvaluation(frame, video, per_layer, float(per_layer.mean()),
                          np.asarray(clip_of, dtype=int))
