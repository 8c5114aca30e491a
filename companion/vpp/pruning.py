"""Video Patch Pruning: a video segmenter whose ViT prunes patches with VPP's modules, and its loss.

VPP (Glandorf et al., 2026) prunes patches of a plain ViT already in its early layers. For frame t
the *temporal mapping module* (Map-SM) matches every early token of frame t to an early token of
frame t−1 (similarity plus a distance prior), copies that token's *deep* feature from frame t−1,
and scores it with a small MLP: deep features are foreground-selective, so the copy tells where the
objects are now. The top ρ_map·N tokens are kept (straight-through top-K). Later layers use
SViT-style *selective modules*, each keeping the top ρ_l·N tokens of its own scores the same way
(a hard budget: the paper's per-token decisions with a ratio loss did not reach their ratios on
our data). Pruned tokens skip the blocks unchanged, so the head still sees a dense token grid.

Two execution modes give the same numbers: ``"masked"`` (all tokens, pruned keys masked out; for
training with batches) and ``"gather"`` (only kept tokens are gathered, computed and scattered
back; batch 1, the mode whose savings are real).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import object_patches
from .matching import matching_loss
from .modules import (
    Mapping,
    Prior,
    SelectiveModule,
    TemporalMappingModule,
    keep_count,
    straight_through_topk,
)
from .schedule import KeepRatioSchedule
from .segmenter import VideoSegmenter, frame_outputs

MODES = ("masked", "gather")


@dataclass(frozen=True)
class FrameResult:
    """One frame through a pruned segmenter."""

    outputs: dict                     # head outputs (logits, masks, aux)
    keep: torch.Tensor                # (B, depth, N) 1 where block l processed token i
    prior: Prior                      # what the next frame maps from
    ratio_losses: dict = field(default_factory=dict)  # L_map and L_l per selection block
    mapping: Mapping | None = None
    # masked mode: per selection block, its soft scores (B, N) and the mask it chose among
    scores: dict = field(default_factory=dict)

    @property
    def pkr(self) -> float:
        """Patch keep ratio of this frame: mean over blocks and tokens of ``keep``."""
        return float(self.keep.detach().float().mean())


class PrunedSegmenter(nn.Module):
    """A :class:`VideoSegmenter` whose backbone prunes patches with VPP (or SViT-style) modules."""

    def __init__(self, segmenter: VideoSegmenter, schedule: KeepRatioSchedule | None = None):
        super().__init__()
        schedule = KeepRatioSchedule() if schedule is None else schedule
        c = segmenter.config
        if schedule.depth != c.depth:
            raise ValueError(f"The schedule is for depth {schedule.depth}, the backbone has "
                             f"{c.depth} blocks.")
        self.segmenter, self.schedule = segmenter, schedule
        self.mapper = TemporalMappingModule(c.dim, c.grid, smoothing=schedule.smoothing) \
            if schedule.map_block is not None else None
        self.selectors = nn.ModuleDict({str(b): SelectiveModule(c.dim) for b in schedule.sm_blocks})

    def forward_frame(self, images: torch.Tensor, prior: Prior | None = None, mode: str = "masked",
                      schedule: KeepRatioSchedule | None = None) -> FrameResult:
        """Run one frame; ``prior=None`` marks a clip's first frame (Map-SM off, blocks dense
        until the first selective module). ``schedule`` overrides the keep ratios at inference."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if mode == "gather" and images.shape[0] != 1:
            raise ValueError(f"mode='gather' runs one frame at a time (batch 1), got a batch of "
                             f"{images.shape[0]}; use mode='masked' for batches.")
        sched = schedule or self.schedule
        x = self.segmenter.embed(images)
        run = self._gathered if mode == "gather" else self._masked
        x, keep, early, deep, deep_keep, losses, mapping, scores = run(x, prior, sched)
        outputs = self.segmenter.decode(x, images)
        return FrameResult(outputs, keep, Prior(early, deep, deep_keep), losses, mapping, scores)

    def _segments(self, sched: KeepRatioSchedule) -> list[tuple[int, int]]:
        """Runs of blocks that share one keep mask: they end where a mask changes or where the
        next frame's prior is read (after block 0 and after the prior block)."""
        points = {0, 1, sched.prior_block + 1, sched.depth, *sched.sm_blocks}
        if sched.map_block is not None:
            points.add(sched.map_block)
        bounds = sorted(points)
        return list(zip(bounds, bounds[1:], strict=False))

    def _masked(self, x: torch.Tensor, prior: Prior | None, sched: KeepRatioSchedule):
        """All tokens, pruned keys masked out: X ← M ⊙ Block(X, keys of M) + (1 − M) ⊙ X."""
        B, N, _ = x.shape
        keep = x.new_ones(B, N)
        rows, losses, mapping, scores = [], {}, None, {}
        early = deep = deep_keep = None
        for start, end in self._segments(sched):
            if start == sched.map_block and prior is not None:
                mapping = self.mapper(early, prior, sched.map_ratio)
                scores[start] = (mapping.scores, keep)
                keep = mapping.keep
                losses["map"] = (mapping.scores.mean() - 0.5) ** 2
            if start in sched.sm_blocks:
                ratio = sched.sm_ratios[sched.sm_blocks.index(start)]
                s, rank = self.selectors[str(start)](x)
                scores[start] = (s, keep.detach())
                # the ratio loss on the soft scores calibrates them to the budget
                losses[f"block{start}"] = ((keep.detach() * s).mean() - ratio) ** 2
                keep = keep * straight_through_topk(s, keep_count(ratio, N), keep.detach(), rank)
            x = self._run_masked(self.segmenter.blocks[start:end], x, keep)
            rows += [keep] * (end - start)
            if start == 0:
                early = x
            if start <= sched.prior_block < end:
                deep, deep_keep = x, keep
        return x, torch.stack(rows, 1), early, deep, deep_keep, losses, mapping, scores

    @staticmethod
    def _run_masked(blocks: nn.ModuleList, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if not keep.requires_grad and bool((keep > 0.5).all()):
            for block in blocks:
                x = block(x)
            return x
        m, key_mask = keep.unsqueeze(-1), keep > 0.5  # every budget keeps at least one token
        for block in blocks:
            x = m * block(x, key_mask=key_mask) + (1 - m) * x
        return x

    def _gathered(self, x: torch.Tensor, prior: Prior | None, sched: KeepRatioSchedule):
        """Batch 1, kept tokens only: one gather per pruning stage, the blocks on the gathered
        tokens, and the tokens written back to the grid only where the grid is read (a
        pruning stage, the prior, the head). The masked mode's numbers without its work."""
        N = x.shape[1]
        index, kept, grid = None, x, x   # kept positions (None = all), their tokens, the grid
        synced = True                    # the grid holds the kept tokens' current values
        current = x.new_ones(1, N)       # the keep mask in force
        rows, mapping, early, deep, deep_keep = [], None, None, None, None

        def written() -> torch.Tensor:
            return kept if index is None else grid.index_copy(1, index, kept)

        for start, end in self._segments(sched):
            chosen = None  # positions among the kept tokens that go on
            if start == sched.map_block and prior is not None:
                mapping = self.mapper(early, prior, sched.map_ratio)
                chosen = mapping.keep[0].nonzero().squeeze(1)
            if start in sched.sm_blocks:
                k = min(keep_count(sched.sm_ratios[sched.sm_blocks.index(start)], N), kept.shape[1])
                chosen = self.selectors[str(start)].margin(kept)[0].topk(k).indices
            if chosen is not None:
                if not synced:  # the tokens left behind keep their current values
                    grid, synced = written(), True
                index = chosen if index is None else index.index_select(0, chosen)
                kept = kept.index_select(1, chosen)
                current = x.new_zeros(1, N).index_fill_(1, index, 1.0)
            for block in self.segmenter.blocks[start:end]:
                kept, synced = block(kept), False
            rows += [current] * (end - start)
            if start == 0:
                early = kept
            if start <= sched.prior_block < end:
                grid, synced = written(), True
                deep, deep_keep = grid, current
        return (grid if synced else written(), torch.stack(rows, 1), early, deep, deep_keep, {},
                mapping, {})

    def sparse_loss(self, result: FrameResult, weight: float = 40.0,
                    map_weight: float = 10.0) -> torch.Tensor:
        """Backbone sparsity loss: 40·(10·L_map + Σ_l L_l)/(10 + #SM), or 40·Σ_l L_l/#SM without prior."""
        sm = [v for k, v in result.ratio_losses.items() if k != "map"]
        total = sum(sm) if sm else result.keep.new_zeros(())
        if "map" in result.ratio_losses:
            return weight * (map_weight * result.ratio_losses["map"] + total) / (map_weight + len(sm))
        return weight * total / max(1, len(sm))

    @torch.no_grad()
    def predict_clip(self, frames: torch.Tensor, mode: str = "gather",
                     schedule: KeepRatioSchedule | None = None) -> list[FrameResult]:
        """Run a clip (T, 3, H, W) frame by frame, each frame mapping from the one before."""
        if frames.ndim != 4:
            raise ValueError(f"Expected a clip of shape (T, 3, H, W), got {tuple(frames.shape)}.")
        results, prior = [], None
        for t in range(frames.shape[0]):
            res = self.forward_frame(frames[t:t + 1], prior, mode, schedule)
            results.append(res)
            prior = res.prior
        return results

    @torch.inference_mode()
    def run_clip(self, frames: torch.Tensor, mode: str = "gather",
                 schedule: KeepRatioSchedule | None = None) -> tuple[list[dict], torch.Tensor]:
        """Head outputs per frame of a clip (T, 3, H, W) and the tokens each block kept (T, depth, N)."""
        results = self.predict_clip(frames, mode, schedule)
        return [r.outputs for r in results], torch.cat([r.keep for r in results])

    @torch.inference_mode()
    def run_batch(self, videos: torch.Tensor, mode: str = "masked",
                  schedule: KeepRatioSchedule | None = None) -> tuple[list[list[dict]], torch.Tensor]:
        """``run_clip`` of each clip of ``videos`` (B, T, 3, H, W), the clips side by side: frame t
        of every clip in one batch, through masked blocks. The same as clip by clip up to
        rounding, which can flip a token whose score sits on its threshold. Returns outputs per
        clip and frame and kept tokens (B, T, depth, N)."""
        if videos.ndim != 5:
            raise ValueError(f"Expected clips of shape (B, T, 3, H, W), got {tuple(videos.shape)}.")
        results, prior = [], None
        for t in range(videos.shape[1]):
            res = self.forward_frame(videos[:, t], prior, mode, schedule)
            results.append(res)
            prior = res.prior
        outputs = [[frame_outputs(r.outputs, b) for r in results] for b in range(videos.shape[0])]
        return outputs, torch.stack([r.keep for r in results], 1)

    @torch.no_grad()
    def frame_call(self, previous: torch.Tensor, frame: torch.Tensor,
                   mode: str = "gather") -> Callable[[], dict]:
        """A batch-1 call on ``frame`` (1, 3, H, W) with the prior of ``previous``, to count and time."""
        self.eval()
        prior = self.forward_frame(previous, None, mode).prior
        return lambda: self.forward_frame(frame, prior, mode).outputs


def objectness_loss(result: FrameResult, masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean over selection modules of the binary cross-entropy between a module's soft keep
    scores and the object patches of the frame (:func:`object_patches` of ``masks`` (B, K, H, W)),
    over the tokens the module chooses among."""
    target = object_patches(masks, patch_size).float()
    terms = [(F.binary_cross_entropy(s.clamp(1e-6, 1 - 1e-6), target, reduction="none")
              * among).sum() / among.sum().clamp(min=1) for s, among in result.scores.values()]
    return sum(terms) / len(terms) if terms else result.keep.new_zeros(())


def chain_loss(model: PrunedSegmenter, batch: dict, key_weight: float = 1.0,
               ref_weight: float = 0.5, objectness_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Sparse fine-tuning loss on a frame chain: the first frame only makes a prior (and a
    sparsity loss); later frames add the segmentation loss (last frame × 1, middle ones × 0.5).
    Every frame adds ``objectness_weight`` × :func:`objectness_loss` (our addition: the task
    loss alone taught the later modules to keep background)."""
    frames, masks, labels = batch["frames"], batch["masks"], batch["labels"]
    if frames.ndim != 5 or frames.shape[1] < 2:
        raise ValueError(f"A chain batch needs frames of shape (B, L, 3, H, W) with L >= 2, got "
                         f"{tuple(frames.shape)}.")
    L = frames.shape[1]
    prior, total, sparse, pkr = None, 0.0, 0.0, []
    patch = model.segmenter.config.patch_size
    for t in range(L):
        res = model.forward_frame(frames[:, t], prior)
        sparse = sparse + model.sparse_loss(res)
        if objectness_weight:
            sparse = sparse + objectness_weight * objectness_loss(res, masks[:, t], patch)
        if t > 0:
            task, _ = matching_loss(res.outputs, masks[:, t], labels)
            total = total + (key_weight if t == L - 1 else ref_weight) * task
        pkr.append(res.pkr)
        prior = res.prior
    return total + sparse, {"sparse": float(sparse.detach()), "pkr": sum(pkr[1:]) / (L - 1)}
