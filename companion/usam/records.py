"""UncertainSAM's records: each size's masks, scores and tokens on every instance; the targets.

For every instance and every segmenter size θ the segmenter runs on the centre click c and on the
dense prompt x_P*. The heads read l = [IoU token ; mask token j] (mask j is paired with its own
token j), one row per mask, and regress the paper's targets:

* ``iou_<size>``: best-of-3 IoU of the segmenter of that size (USAM_θ; from any size's tokens),
* ``iou_sam``: IoU of mask j; at the score's choice, USAM_SAM,
* ``iou_dense``: best-of-3 IoU with the dense prompt (USAM_xP*),
* ``model_gap`` Δ*_Θ = IoU_large − IoU_tiny, ``prompt_gap`` Δ*_XP = IoU_dense − IoU_θ,
  ``task_gap`` Δ*_A = IoU_θ − IoU_j (at the score's choice, IoU_θ − IoU_SAM).

Gaps are shifted by +0.5 and every target is clipped to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..data.ambiguous_shapes import AmbiguousShapes
from ..data.prompts import Prompts
from ..metrics.segmentation import mask_iou
from ..runtime import resolve_device
from .segmenter import PromptableSegmenter

GAP_SHIFT = 0.5
GAPS = ("model_gap", "prompt_gap", "task_gap")


@dataclass(frozen=True)
class Predictions:
    """One segmenter's output on every instance for one prompt, scored against the ground truth."""

    scores: torch.Tensor       # (M, 3) predicted IoU ("SamScore")
    ious: torch.Tensor         # (M, 3) IoU of each mask with the ground truth
    iou_token: torch.Tensor    # (M, D)
    mask_tokens: torch.Tensor  # (M, 3, D), token j made mask j

    @property
    def chosen(self) -> torch.Tensor:
        """Index of the mask with the highest predicted IoU, (M,)."""
        return self.scores.argmax(1)

    @property
    def iou_best(self) -> torch.Tensor:
        """IoU_θ: best-of-3 IoU against the ground truth, (M,)."""
        return self.ious.max(1).values

    @property
    def iou_sam(self) -> torch.Tensor:
        """IoU_SAM: IoU of the score-chosen mask, (M,)."""
        return self.ious.gather(1, self.chosen[:, None])[:, 0]

    @property
    def sam_score(self) -> torch.Tensor:
        """The predicted IoU of the chosen mask (the baseline's confidence), (M,)."""
        return self.scores.max(1).values

    def features(self) -> torch.Tensor:
        """USAM's input l = [IoU token ; mask token of the chosen mask], (M, 2D)."""
        return pair_tokens(self.iou_token, self.mask_tokens)[torch.arange(len(self.scores)),
                                                              self.chosen]


def pair_tokens(iou_token: torch.Tensor, mask_tokens: torch.Tensor) -> torch.Tensor:
    """[IoU token ; mask token j] for every mask j, (B, 3, 2D): each mask with its own token."""
    if iou_token.ndim != 2 or mask_tokens.ndim != 3 or mask_tokens.shape[0] != iou_token.shape[0] \
            or mask_tokens.shape[2] != iou_token.shape[1]:
        raise ValueError(f"expected iou_token (B, D) and mask_tokens (B, n_masks, D), got "
                         f"{tuple(iou_token.shape)} and {tuple(mask_tokens.shape)}.")
    return torch.cat([iou_token[:, None].expand_as(mask_tokens), mask_tokens], dim=-1)


def instance_batches(data: AmbiguousShapes, batch_size: int, device: torch.device,
                     progress: bool, desc: str) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """The one loop over instances: (index, images (B, 3, S, S), masks (B, S, S)) on ``device``."""
    if data.masks.shape[-2:] != data.images.shape[-2:]:
        raise ValueError(f"masks are {tuple(data.masks.shape[-2:])} pixels but the images "
                         f"{tuple(data.images.shape[-2:])}: every instance mask must have its "
                         "image's size; resize the masks (nearest neighbour) to the images.")
    starts = range(0, len(data), batch_size)
    for s in tqdm(starts, desc=desc, disable=not progress, total=math.ceil(len(data) / batch_size)):
        idx = slice(s, s + batch_size)
        yield idx, data.images[data.image_index[idx]].to(device), data.masks[idx].to(device)


@torch.inference_mode()
def predict_instances(segmenter: PromptableSegmenter, data: AmbiguousShapes,
                      points: torch.Tensor, *, batch_size: int = 256, device=None,
                      progress: bool = True, desc: str = "segment") -> Predictions:
    """Run ``segmenter`` on every instance of ``data`` with click ``points`` (M, K, 2)."""
    if len(points) != len(data):
        raise ValueError(f"got {len(points)} prompts for {len(data)} instances: give one prompt "
                         "per instance (see companion.data.prompts.sample_prompts).")
    device = resolve_device(device)
    segmenter.eval().to(device)
    parts = []
    for idx, images, masks in instance_batches(data, batch_size, device, progress, desc):
        out = segmenter(images, points[idx].to(device))
        iou = mask_iou(out.mask_logits > 0, masks[:, None])
        parts.append((out.scores, iou, out.iou_token, out.mask_tokens))
    return Predictions(*(torch.cat([p[k] for p in parts]).cpu() for k in range(4)))


@dataclass(frozen=True)
class USAMRecords:
    """Every size's predictions on the centre click and on the dense prompt, for every instance."""

    sizes: tuple[str, ...]               # ordered from the smallest to the largest model
    single: dict[str, Predictions]
    dense: dict[str, Predictions]

    def __len__(self) -> int:
        return len(self.single[self.sizes[0]].scores)

    @property
    def target_names(self) -> tuple[str, ...]:
        return (*(f"iou_{s}" for s in self.sizes), "iou_sam", "iou_dense", *GAPS)

    def targets(self, size: str) -> dict[str, torch.Tensor]:
        """The paper's targets (unshifted) for the rows that carry ``size``'s tokens."""
        self._check_size(size)
        own, dense = self.single[size], self.dense[size]
        small, large = self.single[self.sizes[0]], self.single[self.sizes[-1]]
        out = {f"iou_{s}": self.single[s].iou_best for s in self.sizes}
        out.update(iou_sam=own.iou_sam, iou_dense=dense.iou_best,
                   model_gap=large.iou_best - small.iou_best,
                   prompt_gap=dense.iou_best - own.iou_best,
                   task_gap=own.iou_best - own.iou_sam)
        return out

    def mask_targets(self, size: str) -> dict[str, torch.Tensor]:
        """The targets for every mask j of ``size``, each (M, 3).

        ``iou_sam`` becomes the IoU of mask j and ``task_gap`` IoU_θ − IoU_j (at the score's
        choice, the paper's targets); the others belong to the instance, the same for all masks.
        """
        own = self.single[size]
        out = {k: v[:, None].expand_as(own.ious) for k, v in self.targets(size).items()}
        out.update(iou_sam=own.ious, task_gap=own.iou_best[:, None] - own.ious)
        return out

    def training_rows(self, sizes: Sequence[str] | None = None, *,
                      masks: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs l (R, 2D) and encoded targets (R, n_targets).

        ``masks="all"``: one row per (instance, size, mask), so the heads learn what each mask's
        token says about that mask; ``"chosen"``: only the score-chosen mask's row.
        """
        if masks not in ("all", "chosen"):
            raise ValueError(f"masks must be 'all' or 'chosen', got {masks!r}.")
        xs, ys = [], []
        for size in sizes or self.sizes:
            own = self.single[size]
            if masks == "chosen":
                xs.append(own.features())
                ys.append(encode_targets(self.targets(size), self.target_names))
            else:
                xs.append(pair_tokens(own.iou_token, own.mask_tokens).flatten(0, 1))
                ys.append(encode_targets({k: v.flatten() for k, v in self.mask_targets(size).items()},
                                         self.target_names))
        return torch.cat(xs), torch.cat(ys)

    def subset(self, index) -> USAMRecords:
        """The records of the instances in ``index``."""
        index = torch.as_tensor(list(index) if isinstance(index, range) else index, dtype=torch.long)

        def take(p: Predictions) -> Predictions:
            return Predictions(p.scores[index], p.ious[index], p.iou_token[index],
                               p.mask_tokens[index])

        return USAMRecords(self.sizes, {k: take(v) for k, v in self.single.items()},
                           {k: take(v) for k, v in self.dense.items()})

    def _check_size(self, size: str) -> None:
        if size not in self.sizes:
            raise ValueError(f"Unknown size {size!r}: these records hold {', '.join(self.sizes)}.")


def collect_records(segmenters: Mapping[str, PromptableSegmenter], data: AmbiguousShapes,
                    prompts: Prompts, *, batch_size: int = 256, device=None,
                    progress: bool = True) -> USAMRecords:
    """Run every segmenter (smallest first) on the centre click and on the dense prompt."""
    if len(prompts) != len(data):
        raise ValueError(f"got {len(prompts)} prompts for {len(data)} instances: sample them from "
                         "data.masks.")
    if len(segmenters) < 2:
        raise ValueError("USAM's model gap needs at least two segmenter sizes, ordered from the "
                         f"smallest to the largest; got {list(segmenters)}.")
    kw = dict(batch_size=batch_size, device=device, progress=progress)
    single = {k: predict_instances(m, data, prompts.centre, desc=f"{k}: centre click", **kw)
              for k, m in segmenters.items()}
    dense = {k: predict_instances(m, data, prompts.dense, desc=f"{k}: dense prompt", **kw)
             for k, m in segmenters.items()}
    return USAMRecords(tuple(segmenters), single, dense)


def encode_targets(targets: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """Stack targets as columns; gaps shifted by +0.5; all clipped to [0, 1]."""
    cols = [targets[n] + (GAP_SHIFT if n in GAPS else 0.0) for n in names]
    return torch.stack(cols, dim=1).clamp(0.0, 1.0)
