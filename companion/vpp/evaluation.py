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
from ..tables import Table
from .postprocess import FramePrediction, postprocess
from .schedule import KeepRatioSchedule
from .tracker import track


class ClipModel(Protocol):
    """A model that runs a clip (and clips side by side): head outputs per frame and the tokens
    each block kept."""

    def eval(self) -> object: ...

    def run_clip(self, frames: torch.Tensor, **options) -> tuple[list[dict], torch.Tensor]: ...

    def run_batch(self, videos: torch.Tensor, **options) -> tuple[list[list[dict]], torch.Tensor]: ...


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


@dataclass(frozen=True)
class ClipRuns:
    """What a model computed on every clip of a dataset: head outputs per frame and kept tokens.

    One pass of the model, to score more than once (with and without classes) or to read the
    kept tokens without running the clips again.
    """

    outputs: list[list[dict]]  # per clip, per frame: the head's outputs
    keeps: list[torch.Tensor]  # per clip: (T, depth, N), the tokens each block processed


def run_clips(model: ClipModel, data: MovingShapes, *, batch_size: int = 16, progress: bool = True,
              **run_options) -> ClipRuns:
    """Run ``model`` on every clip of ``data`` (``run_options`` go to the model's run).

    ``batch_size`` clips run side by side where the model has a ``run_batch``, at a fraction of
    the cost of one clip at a time (``batch_size=1``, ``run_clip``): the dense and the
    token-merging segmenter with the same outputs (every frame in one batch); a pruned
    segmenter frame by frame through masked blocks, the same up to rounding (a token whose score
    sits on its threshold can flip).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    model.eval()
    outputs, keeps = [], []
    batched = batch_size > 1 and hasattr(model, "run_batch")
    step = batch_size if batched else 1
    for start in tqdm(range(0, len(data), step), desc="run clips", disable=not progress, leave=False):
        clips = [data.clip(v)["frames"] for v in range(start, min(start + step, len(data)))]
        if batched:
            out, keep = model.run_batch(torch.stack(clips), **run_options)
            outputs += out
            keeps += list(keep)
        else:
            out, keep = model.run_clip(clips[0], **run_options)
            outputs.append(out)
            keeps.append(keep)
    return ClipRuns(outputs, keeps)


def evaluate_clips(model: ClipModel | ClipRuns, data: MovingShapes, *, class_agnostic: bool = False,
                   batch_size: int = 16, progress: bool = True, **run_options) -> ClipEvaluation:
    """Frame AP, video AP and kept-token ratios of ``model`` on every clip of ``data``.

    ``model`` is a clip model, or its :class:`ClipRuns` on ``data`` (from :func:`run_clips`) to
    score without running it again; ``batch_size`` and ``run_options`` (a pruned segmenter's
    ``mode``, ``schedule``) go to :func:`run_clips`. ``class_agnostic=True`` merges all
    classes into one, so that only the masks (and tracks) count.
    """
    if isinstance(model, ClipRuns):
        if run_options:
            raise ValueError(f"run options {sorted(run_options)} were given with finished runs; "
                             "pass them to run_clips instead.")
        if len(model.outputs) != len(data):
            raise ValueError(f"the runs cover {len(model.outputs)} clips but the data has "
                             f"{len(data)}; score runs on the data they were made on.")
        runs = model
    else:
        runs = run_clips(model, data, batch_size=batch_size, progress=progress, **run_options)
    frame_preds, frame_gt, video_preds, video_gt, clip_of = [], [], [], [], []
    for v, outputs in enumerate(runs.outputs):
        clip = data.clip(v)
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
    frame = mask_ap([p.masks for p in frame_preds], [p.scores for p in frame_preds],
                    [p.labels for p in frame_preds], [g[0] for g in frame_gt], [g[1] for g in frame_gt])
    video = video_ap([p.masks for p in video_preds], [p.scores for p in video_preds],
                     [p.labels for p in video_preds], [g[0] for g in video_gt], [g[1] for g in video_gt])
    per_layer = keep_ratio_per_layer(torch.cat(runs.keeps))
    return ClipEvaluation(frame, video, per_layer, float(per_layer.mean()),
                          np.asarray(clip_of, dtype=int))


def object_patches(masks: torch.Tensor, patch_size: int, coverage: float = 0.25) -> torch.Tensor:
    """Patches at least ``coverage`` covered by an instance: (T, N) bool from masks (T, K, H, W)."""
    covered = torch.nn.functional.avg_pool2d(masks.any(1).float()[:, None], patch_size)
    return covered.flatten(1) >= coverage


@dataclass(frozen=True)
class ModuleSelectivity:
    """What one selection module keeps, over the frames that have a prior."""

    module: str        # "Map-SM" or "selective module"
    block: int         # the first block that runs on its choice (layer = block + 1)
    target: float      # ρ of the schedule
    kept: float        # share of all patches kept
    object_kept: Interval  # share of the object patches kept, with a bootstrap interval over clips

    @property
    def selective(self) -> bool:
        """The object patches' share lies above the kept share, beyond the interval."""
        return self.object_kept.low > self.kept


@dataclass(frozen=True)
class Selectivity:
    """Per-module kept shares and their foreground selectivity (see :func:`selectivity`)."""

    modules: tuple[ModuleSelectivity, ...]
    weakest: Interval  # min over modules of (object share − kept share), bootstrapped jointly

    def table(self) -> Table:
        return Table.of(
            ["module", "layer", "target ρ", "kept", "object patches kept [95 %]", "verdict"],
            [[m.module, m.block + 1, f"{m.target:.3f}", f"{m.kept:.3f}",
              f"{m.object_kept.estimate:.3f} [{m.object_kept.low:.3f}, {m.object_kept.high:.3f}]",
              "selective" if m.selective else "not selective"] for m in self.modules])

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table())


def selectivity(runs: ClipRuns, data: MovingShapes, schedule: KeepRatioSchedule, patch_size: int, *,
                coverage: float = 0.25, n_boot: int = 1000, seed: int = 0) -> Selectivity:
    """Kept share of all patches and of object patches (:func:`object_patches`) after every
    selection module of ``schedule``, on the frames after each clip's first (those with a
    prior), with bootstrap intervals over clips (whole clips drawn with replacement)."""
    if len(runs.keeps) != len(data):
        raise ValueError(f"the runs cover {len(runs.keeps)} clips but the data has {len(data)}; "
                         "measure runs on the data they were made on.")
    points = [("Map-SM", schedule.map_block, schedule.map_ratio)] \
        if schedule.map_block is not None else []
    points += [("selective module", b, r)
               for b, r in zip(schedule.sm_blocks, schedule.sm_ratios, strict=True)]
    blocks = [b for _, b, _ in points]
    kept_all, kept_obj, n_obj, n_all = [], [], [], []  # per clip, per module
    for v, keep in enumerate(runs.keeps):
        obj = object_patches(data.clip(v)["masks"][1:], patch_size, coverage).float()
        later = keep[1:][:, blocks]                                   # (T−1, modules, N)
        kept_all.append(later.sum((0, 2)).numpy())
        kept_obj.append((later * obj[:, None]).sum((0, 2)).numpy())
        n_obj.append(float(obj.sum()))
        n_all.append(float(later.shape[0] * later.shape[2]))
    kept_all, kept_obj = np.stack(kept_all), np.stack(kept_obj)
    n_obj, n_all = np.asarray(n_obj), np.asarray(n_all)
    share = kept_all.sum(0) / n_all.sum()

    def recall(drawn: np.ndarray) -> np.ndarray:
        total = n_obj[drawn].sum()
        return kept_obj[drawn].sum(0) / total if total > 0 else np.full(len(points), np.nan)

    modules = tuple(
        ModuleSelectivity(name, block, target, float(share[i]),
                          bootstrap_interval(lambda d, i=i: float(recall(d)[i]), len(data),
                                             n_boot=n_boot, seed=seed))
        for i, (name, block, target) in enumerate(points))
    weakest = bootstrap_interval(lambda d: float(np.min(recall(d) - share)), len(data),
                                 n_boot=n_boot, seed=seed)
    return Selectivity(modules, weakest)
