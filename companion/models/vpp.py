"""Video Patch Pruning: temporal mapping module, selective modules, keep-ratio schedule, losses.

VPP (Glandorf et al., 2026) prunes patches of a plain ViT already in its early layers. For frame t
the *temporal mapping module* (Map-SM) matches every early token of frame t to an early token of
frame t−1 (similarity plus a distance prior), copies that token's *deep* feature from frame t−1,
and scores it with a small MLP: deep features are foreground-selective, so the copy tells where the
objects are now. The top ρ_map·N tokens are kept (straight-through top-K). Later layers use
SViT-style *selective modules* with hard Gumbel decisions and a ratio loss. Pruned tokens skip the
blocks unchanged, so the head still sees a dense token grid.

Two execution modes give the same numbers: ``"masked"`` (all tokens, pruned keys masked out; for
training with batches) and ``"gather"`` (only kept tokens are gathered, computed and scattered
back; batch 1, the mode whose savings are real).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.moving_shapes import MovingShapes
from ..metrics.efficiency import keep_ratio_per_layer
from ..metrics.segmentation import APResult, mask_ap, video_ap
from .token_merging import TokenMergingSegmenter
from .vit_video import FramePrediction, Mlp, VideoSegmenter, postprocess, segmentation_loss, track

MODES = ("masked", "gather")


@dataclass(frozen=True)
class KeepRatioSchedule:
    """Where tokens are selected and the keep ratio ρ aimed at (fraction of all N tokens).

    Blocks before ``map_block`` run dense; Map-SM keeps ``map_ratio`` (ρ_map) from ``map_block``
    on; the selective module at ``sm_blocks[i]`` aims at ``sm_ratios[i]`` (ρ_l) and its decision
    holds until the next selection. ``prior_block`` is the block whose output (with the mask in
    force there) is the next frame's deep prior X_6^{t−1}. ``map_block=None`` gives the
    later-layers-only (SViT-style) baseline.
    """

    depth: int = 12
    map_block: int | None = 1
    map_ratio: float = 0.7
    sm_blocks: tuple[int, ...] = (3, 6, 9)
    sm_ratios: tuple[float, ...] = (0.56, 0.448, 0.358)
    prior_block: int = 5
    smoothing: int = 3

    def __post_init__(self):
        ratios = ((self.map_ratio,) if self.map_block is not None else ()) + tuple(self.sm_ratios)
        for r in ratios:
            if not 0.0 < r <= 1.0:
                raise ValueError(f"Keep ratios must lie in (0, 1], got {r}: a ratio of 0 would "
                                 "drop every token, above 1 keeps more tokens than exist.")
        if any(b > a for a, b in zip(ratios, ratios[1:])):
            raise ValueError(f"Keep ratios must not increase with depth (a pruned token stays "
                             f"pruned), got {ratios}.")
        if len(self.sm_blocks) != len(self.sm_ratios):
            raise ValueError(f"sm_blocks {self.sm_blocks} and sm_ratios {self.sm_ratios} must have "
                             "the same length.")
        points = ((self.map_block,) if self.map_block is not None else ()) + tuple(self.sm_blocks)
        if list(points) != sorted(set(points)) or (points and not 1 <= points[0]) or \
                (points and points[-1] >= self.depth):
            raise ValueError(f"Selection blocks {points} must be increasing, after block 0 and "
                             f"below depth={self.depth}.")
        if self.map_block is not None and not self.map_block <= self.prior_block < self.depth:
            raise ValueError(f"prior_block={self.prior_block} must lie in [map_block, depth).")
        if self.smoothing < 1 or self.smoothing % 2 == 0:
            raise ValueError(f"smoothing must be an odd kernel size, got {self.smoothing}.")

    @classmethod
    def paper(cls, pkr: float = 0.55, depth: int = 12) -> "KeepRatioSchedule":
        """The paper's two operating points: PKR 0.55 (ρ_map 0.7, ×0.8) or 0.4 (ρ_map 0.6, ×0.7).

        Block 0 dense, Map-SM at block 1, selective modules at blocks 3, 6, 9, prior from block 5;
        ρ_l = ρ_map·γ^l. The 0.4 point uses its own ratios (the released Small config repeats the
        0.55 ones and cannot reach 0.4).
        """
        presets = {0.55: (0.7, 0.8), 0.4: (0.6, 0.7)}
        if pkr not in presets:
            raise ValueError(f"The paper's schedules are pkr=0.55 or pkr=0.4, got {pkr}; build "
                             "KeepRatioSchedule(...) yourself for other ratios.")
        rho, gamma = presets[pkr]
        return cls(depth=depth, map_ratio=rho, sm_ratios=tuple(rho * gamma ** k for k in (1, 2, 3)))

    @classmethod
    def later_only(cls, target_pkr: float, depth: int = 12, sm_blocks=(3, 6, 9),
                   decay: float = 0.7) -> "KeepRatioSchedule":
        """SViT-style schedule: dense until ``sm_blocks[0]``, ρ_l = a·decay^l with a set so that
        the mean keep ratio over all blocks equals ``target_pkr``."""
        spans = [b - a for a, b in zip(sm_blocks, [*sm_blocks[1:], depth])]
        weight = sum(s * decay ** k for k, s in enumerate(spans))
        a = (target_pkr * depth - sm_blocks[0]) / weight
        if not 0.0 < a <= 1.0:
            raise ValueError(f"target_pkr={target_pkr} cannot be reached with dense blocks before "
                             f"{sm_blocks[0]} and decay {decay}.")
        return cls(depth=depth, map_block=None, sm_blocks=tuple(sm_blocks),
                   sm_ratios=tuple(a * decay ** k for k in range(len(sm_blocks))))

    def per_block(self, has_prior: bool = True) -> tuple[float, ...]:
        """Target keep ratio of each block (1.0 = dense); without a prior Map-SM is off."""
        out, current = [], 1.0
        for b in range(self.depth):
            if b == self.map_block and has_prior:
                current = self.map_ratio
            if b in self.sm_blocks:
                current = self.sm_ratios[self.sm_blocks.index(b)]
            out.append(current)
        return tuple(out)

    @property
    def pkr(self) -> float:
        """Target patch keep ratio: mean over blocks of the kept fraction (with a prior)."""
        return sum(self.per_block()) / self.depth

    def scaled(self, factor: float) -> "KeepRatioSchedule":
        """The same schedule with every ratio multiplied by ``factor`` (capped at 1)."""
        return KeepRatioSchedule(self.depth, self.map_block, min(1.0, self.map_ratio * factor),
                                 self.sm_blocks, tuple(min(1.0, r * factor) for r in self.sm_ratios),
                                 self.prior_block, self.smoothing)


def straight_through_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Hard top-k mask with the gradient of the soft scores: y − sg(s) + s (Map-SM step 8)."""
    hard = torch.zeros_like(scores).scatter_(-1, scores.topk(k, dim=-1).indices, 1.0)
    return hard - scores.detach() + scores


def _count(ratio: float, n: int) -> int:
    return max(1, math.floor(ratio * n + 1e-6))


class SelectiveModule(nn.Module):
    """Per-token keep/drop decision: LogSoftmax(MLP(LN(x))) with D → D/4 → 2, hard Gumbel (τ = 10).

    In training the decision is a straight-through hard Gumbel sample; at evaluation it is the
    noise-free argmax (the released code keeps sampling with noise scale 1/τ at test time).
    """

    def __init__(self, dim: int, tau: float = 10.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, dim // 4), 2)
        self.tau = tau

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """f = LogSoftmax(MLP(LN(x))) (B, N, 2); channel 0 = keep."""
        return F.log_softmax(self.mlp(self.norm(x)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.log_probs(x)
        if self.training:
            return F.gumbel_softmax(self.tau * f, tau=self.tau, hard=True)[..., 0]
        return (f[..., 0] >= f[..., 1]).to(x.dtype)

    def top_k(self, x: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
        """Keep exactly the k best-scored tokens among those still kept (for keep-ratio sweeps)."""
        f = self.log_probs(x)
        margin = (f[..., 0] - f[..., 1]).masked_fill(keep < 0.5, float("-inf"))
        return torch.zeros_like(keep).scatter_(-1, margin.topk(k, dim=-1).indices, 1.0)


def distance_prior(grid: int) -> torch.Tensor:
    """Φ_dist[i, j] = log10(10·(2 − ‖p_i − p_j‖₁)/2 + 1e−6) for grid cells p in [0, 1]² (N, N)."""
    axis = torch.linspace(0, 1, grid)
    p = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    l1 = (p[:, None, :] - p[None, :, :]).abs().sum(-1)
    return torch.log10(10 * (2 - l1) / 2 + 1e-6)


@dataclass(frozen=True)
class Prior:
    """What frame t−1 leaves for frame t: early tokens X_1 (keys), deep tokens X_6 (values) and
    the keep mask M_6 in force where X_6 was taken (B, N, ·)."""

    early: torch.Tensor
    deep: torch.Tensor
    keep: torch.Tensor


@dataclass(frozen=True)
class Mapping:
    """Output of the temporal mapping module for one frame."""

    keep: torch.Tensor        # M (B, N): hard top-K mask with straight-through gradient
    scores: torch.Tensor      # s (B, N): soft keep probability
    source: torch.Tensor      # (B, N): index of the previous-frame token each token copied
    mapped: torch.Tensor      # X̂ (B, N, D): the copied deep features


class TemporalMappingModule(nn.Module):
    """Map-SM: associate early tokens with the previous frame, copy its deep features, keep top-K.

    Φ = X_1^t (X_1^{t−1})ᵀ + Φ_dist, masked to −∞ where M_6^{t−1} = 0;  A = GumbelSoftmax_hard(τ_m Φ);
    X̂ = A X_6^{t−1};  f = LogSoftmax(MLP(LN(X̂))) smoothed by a k×k mean filter;
    s = GumbelSoftmax_soft(τ_s f)[..., 0];  M = top-K(s) − sg(s) + s with K = ⌊ρ_map N⌋.
    The association is parameter-free; only the scoring MLP (D → D/2 → 2) learns.
    """

    def __init__(self, dim: int, grid: int, tau_map: float = 10.0, tau_select: float = 10.0,
                 smoothing: int = 3):
        super().__init__()
        self.grid, self.tau_map, self.tau_select, self.smoothing = grid, tau_map, tau_select, smoothing
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, dim // 2), 2)
        self.register_buffer("phi_dist", distance_prior(grid), persistent=False)

    def associate(self, early: torch.Tensor, prior: Prior) -> torch.Tensor:
        """A (B, N, N): one-hot rows picking the previous-frame source of every token."""
        if prior.early.shape != early.shape:
            raise ValueError(f"The prior was made from tokens of shape {tuple(prior.early.shape)} "
                             f"but this frame has {tuple(early.shape)}: frames of one clip must have "
                             "the same size; start a new clip (prior=None) when the size changes.")
        phi = early @ prior.early.transpose(1, 2) + self.phi_dist
        sources = prior.keep > 0.5
        sources = sources | ~sources.any(1, keepdim=True)  # a frame that kept nothing: any source
        phi = phi.masked_fill(~sources[:, None, :], float("-inf"))
        if self.training:
            return F.gumbel_softmax(self.tau_map * phi, tau=self.tau_map, hard=True)
        return torch.zeros_like(phi).scatter_(-1, phi.argmax(-1, keepdim=True), 1.0)

    def forward(self, early: torch.Tensor, prior: Prior, keep_ratio: float) -> Mapping:
        A = self.associate(early, prior)
        mapped = A @ prior.deep
        f = F.log_softmax(self.mlp(self.norm(mapped)), dim=-1)
        B, N, _ = f.shape
        k = self.smoothing
        f = f.transpose(1, 2).reshape(B, 2, self.grid, self.grid)
        f = F.avg_pool2d(F.pad(f, (k // 2,) * 4, mode="replicate"), k, stride=1)
        f = f.reshape(B, 2, N).transpose(1, 2)
        if self.training:
            s = F.gumbel_softmax(self.tau_select * f, tau=self.tau_select, hard=False)[..., 0]
        else:
            s = f.softmax(-1)[..., 0]
        return Mapping(straight_through_topk(s, _count(keep_ratio, N)), s, A.argmax(-1), mapped)


@dataclass(frozen=True)
class FrameResult:
    """One frame through a pruned segmenter."""

    outputs: dict                     # head outputs (logits, masks, aux)
    keep: torch.Tensor                # (B, depth, N) 1 where block l processed token i
    prior: Prior                      # what the next frame maps from
    ratio_losses: dict = field(default_factory=dict)  # L_map and L_l per selection block
    mapping: Mapping | None = None

    @property
    def pkr(self) -> float:
        """Patch keep ratio of this frame: mean over blocks and tokens of ``keep``."""
        return float(self.keep.detach().float().mean())


class PrunedSegmenter(nn.Module):
    """A :class:`VideoSegmenter` whose backbone prunes patches with VPP (or SViT-style) modules."""

    def __init__(self, segmenter: VideoSegmenter, schedule: KeepRatioSchedule = KeepRatioSchedule()):
        super().__init__()
        c = segmenter.config
        if schedule.depth != c.depth:
            raise ValueError(f"The schedule is for depth {schedule.depth}, the backbone has "
                             f"{c.depth} blocks.")
        self.segmenter, self.schedule = segmenter, schedule
        self.mapper = TemporalMappingModule(c.dim, c.grid, smoothing=schedule.smoothing) \
            if schedule.map_block is not None else None
        self.selectors = nn.ModuleDict({str(b): SelectiveModule(c.dim) for b in schedule.sm_blocks})

    def forward_frame(self, images: torch.Tensor, prior: Prior | None = None, mode: str = "masked",
                      schedule: KeepRatioSchedule | None = None, topk: bool = False) -> FrameResult:
        """Run one frame; ``prior=None`` marks a clip's first frame (Map-SM off, blocks dense).

        ``schedule`` overrides the keep ratios at inference; ``topk=True`` makes the selective
        modules keep exactly their scheduled ratio (top-k by score) instead of deciding per token.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if mode == "gather" and images.shape[0] != 1:
            raise ValueError(f"mode='gather' runs one frame at a time (batch 1), got a batch of "
                             f"{images.shape[0]}; use mode='masked' for batches.")
        sched = schedule or self.schedule
        seg = self.segmenter
        x = seg.embed(images)
        B, N, _ = x.shape
        keep = x.new_ones(B, N)
        rows, losses, mapping = [], {}, None
        early = deep = deep_keep = None
        # Segments of blocks that share one keep mask; they end where a mask changes or where the
        # next frame's prior is read (after block 0 and after the prior block).
        points = {0, 1, sched.prior_block + 1, len(seg.blocks), *sched.sm_blocks}
        if sched.map_block is not None:
            points.add(sched.map_block)
        bounds = sorted(points)
        for start, end in zip(bounds, bounds[1:]):
            if start == sched.map_block and prior is not None:
                mapping = self.mapper(early, prior, sched.map_ratio)
                keep = mapping.keep
                losses["map"] = (mapping.scores.mean() - 0.5) ** 2
            if start in sched.sm_blocks:
                ratio = sched.sm_ratios[sched.sm_blocks.index(start)]
                selector = self.selectors[str(start)]
                decision = selector.top_k(x, keep, _count(ratio, N)) if topk else selector(x)
                keep = keep * decision
                losses[f"block{start}"] = (keep.mean() - ratio) ** 2
            x = self._run_blocks(seg.blocks[start:end], x, keep, mode)
            rows += [keep] * (end - start)
            if start == 0:
                early = x
            if start <= sched.prior_block < end:
                deep, deep_keep = x, keep
        outputs = seg.decode(x, images)
        return FrameResult(outputs, torch.stack(rows, 1), Prior(early, deep, deep_keep), losses, mapping)

    @staticmethod
    def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, keep: torch.Tensor, mode: str) -> torch.Tensor:
        """Masked: X ← M ⊙ Block(X, keys of M) + (1 − M) ⊙ X per block.  Gather: the kept tokens
        are gathered once, run through the blocks and scattered back."""
        if bool((keep > 0.5).all()):
            for block in blocks:
                x = block(x)
            return x
        if mode == "masked":
            m, key_mask = keep.unsqueeze(-1), keep > 0.5
            # A sample with no kept token would attend to nothing (NaN); its output is discarded
            # by the mixing below, so let it attend to everything.
            key_mask = key_mask | ~key_mask.any(1, keepdim=True)
            for block in blocks:
                x = m * block(x, key_mask=key_mask) + (1 - m) * x
            return x
        index = keep[0].nonzero().squeeze(1)
        if index.numel() == 0:
            return x
        kept = x.index_select(1, index)
        for block in blocks:
            kept = block(kept)
        return x.index_copy(1, index, kept)

    def sparse_loss(self, result: FrameResult, weight: float = 40.0, map_weight: float = 10.0) -> torch.Tensor:
        """Backbone sparsity loss: 40·(10·L_map + Σ_l L_l)/(10 + #SM), or 40·Σ_l L_l/#SM without prior."""
        sm = [v for k, v in result.ratio_losses.items() if k != "map"]
        total = sum(sm) if sm else result.keep.new_zeros(())
        if "map" in result.ratio_losses:
            return weight * (map_weight * result.ratio_losses["map"] + total) / (map_weight + len(sm))
        return weight * total / max(1, len(sm))

    @torch.no_grad()
    def predict_clip(self, frames: torch.Tensor, mode: str = "gather",
                     schedule: KeepRatioSchedule | None = None, topk: bool = False) -> list[FrameResult]:
        """Run a clip (T, 3, H, W) frame by frame, each frame mapping from the one before."""
        if frames.ndim != 4:
            raise ValueError(f"Expected a clip of shape (T, 3, H, W), got {tuple(frames.shape)}.")
        results, prior = [], None
        for t in range(frames.shape[0]):
            res = self.forward_frame(frames[t:t + 1], prior, mode, schedule, topk)
            results.append(res)
            prior = res.prior
        return results


def chain_loss(model: PrunedSegmenter, batch: dict, key_weight: float = 1.0,
               ref_weight: float = 0.5) -> tuple[torch.Tensor, dict]:
    """Sparse fine-tuning loss on a frame chain: the first frame only makes a prior (and a
    sparsity loss); later frames add the segmentation loss (last frame × 1, middle ones × 0.5)."""
    frames, masks, labels = batch["frames"], batch["masks"], batch["labels"]
    if frames.ndim != 5 or frames.shape[1] < 2:
        raise ValueError(f"A chain batch needs frames of shape (B, L, 3, H, W) with L >= 2, got "
                         f"{tuple(frames.shape)}.")
    L = frames.shape[1]
    prior, total, sparse, pkr = None, 0.0, 0.0, []
    for t in range(L):
        res = model.forward_frame(frames[:, t], prior)
        sparse = sparse + model.sparse_loss(res)
        if t > 0:
            task, _ = segmentation_loss(res.outputs, masks[:, t], labels)
            total = total + (key_weight if t == L - 1 else ref_weight) * task
        pkr.append(res.pkr)
        prior = res.prior
    return total + sparse, {"sparse": float(sparse.detach()), "pkr": sum(pkr[1:]) / (L - 1)}


@dataclass(frozen=True)
class ClipEvaluation:
    """Accuracy and kept tokens of a model over clips."""

    frame_ap: APResult            # COCO mask AP over all frames
    video_ap: APResult            # spatio-temporal AP over tracked clips
    keep_per_layer: torch.Tensor  # (depth,) fraction of tokens each block processed
    pkr: float                    # mean of keep_per_layer


@torch.no_grad()
def run_clip(model: nn.Module, frames: torch.Tensor, mode: str = "gather",
             schedule: KeepRatioSchedule | None = None, topk: bool = False) -> tuple[list[dict], torch.Tensor]:
    """Head outputs per frame and kept-token ratios (T, depth, N) of a dense, pruned or merging model."""
    if isinstance(model, PrunedSegmenter):
        results = model.predict_clip(frames, mode, schedule, topk)
        return [r.outputs for r in results], torch.cat([r.keep for r in results])
    if isinstance(model, TokenMergingSegmenter):
        outputs, ratios = [], []
        for t in range(frames.shape[0]):
            tokens, ratio = model.forward_tokens(frames[t:t + 1])
            outputs.append(model.segmenter.decode(tokens, frames[t:t + 1]))
            ratios.append(ratio)
        n = model.segmenter.config.num_tokens
        return outputs, torch.stack(ratios)[:, :, None].expand(-1, -1, n)
    if isinstance(model, VideoSegmenter):
        outputs = [model(frames[t:t + 1]) for t in range(frames.shape[0])]
        c = model.config
        return outputs, torch.ones(frames.shape[0], c.depth, c.num_tokens)
    raise TypeError(f"Expected a VideoSegmenter, PrunedSegmenter or TokenMergingSegmenter, got "
                    f"{type(model).__name__}.")


def evaluate_clips(model: nn.Module, data: MovingShapes, mode: str = "gather",
                   schedule: KeepRatioSchedule | None = None, topk: bool = False,
                   class_agnostic: bool = False, progress: bool = True) -> ClipEvaluation:
    """Frame AP, video AP and kept-token ratios of ``model`` on every clip of ``data``.

    ``class_agnostic=True`` merges all classes into one, so that only the masks (and tracks) count.
    """
    model.eval()
    frame_preds, frame_gt, video_preds, video_gt, keeps = [], [], [], [], []
    for v in tqdm(range(len(data)), desc="evaluate", disable=not progress, leave=False):
        clip = data.clip(v)
        outputs, keep = run_clip(model, clip["frames"], mode, schedule, topk)
        preds = [postprocess(o, data.image_size)[0] for o in outputs]
        if class_agnostic:
            preds = [FramePrediction(p.masks, p.scores, torch.zeros_like(p.labels)) for p in preds]
        valid = clip["labels"] >= 0
        labels = clip["labels"][valid] * (0 if class_agnostic else 1)
        frame_preds += preds
        frame_gt += [(clip["masks"][t][valid], labels) for t in range(len(preds))]
        video_preds.append(track(preds))
        video_gt.append((clip["masks"][:, valid], labels))
        keeps.append(keep)
    frame = mask_ap([p.masks for p in frame_preds], [p.scores for p in frame_preds],
                    [p.labels for p in frame_preds], [g[0] for g in frame_gt], [g[1] for g in frame_gt])
    video = video_ap([p.masks for p in video_preds], [p.scores for p in video_preds],
                     [p.labels for p in video_preds], [g[0] for g in video_gt], [g[1] for g in video_gt])
    per_layer = keep_ratio_per_layer(torch.cat(keeps))
    return ClipEvaluation(frame, video, per_layer, float(per_layer.mean()))


@torch.no_grad()
def frame_call(model: nn.Module, previous: torch.Tensor, frame: torch.Tensor,
               mode: str = "gather") -> Callable[[], dict]:
    """A batch-1 call of ``model`` on ``frame`` (1, 3, H, W), with the prior of ``previous`` for a
    pruned segmenter: the unit that FLOPs and wall-clock time are measured on."""
    model.eval()
    if isinstance(model, PrunedSegmenter):
        prior = model.forward_frame(previous, None, mode).prior
        return lambda: model.forward_frame(frame, prior, mode).outputs
    if isinstance(model, (VideoSegmenter, TokenMergingSegmenter)):
        return lambda: model(frame)
    raise TypeError(f"Expected a VideoSegmenter, PrunedSegmenter or TokenMergingSegmenter, got "
                    f"{type(model).__name__}.")
