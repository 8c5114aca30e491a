"""VPP's token-merging baseline (ToMe, Bolya et al. 2023): fewer tokens per block without training.

In every block, after attention, the tokens are split alternately into two sets A and B; each A
token finds its most similar B token by the cosine similarity of the attention keys, and the r
most similar pairs are merged (size-weighted mean). Attention uses the log of each token's size
as a bias ("proportional attention"). For dense prediction the merged tokens are copied back to
every patch they absorbed at the end, so the head sees the full grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .segmenter import VideoSegmenter, frame_outputs


@dataclass(frozen=True)
class MergeState:
    """Tokens after merging: ``sizes`` (B, n) patches per token, ``source`` (B, N) token of each patch."""

    sizes: torch.Tensor
    source: torch.Tensor


def bipartite_merge(x: torch.Tensor, metric: torch.Tensor, state: MergeState,
                    r: int) -> tuple[torch.Tensor, MergeState]:
    """Merge the ``r`` most similar (A, B) pairs of ``x`` (B, n, D); A = even, B = odd tokens."""
    n = x.shape[1]
    r = min(r, n // 2)
    if r <= 0:
        return x, state
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a_idx = torch.arange(0, n, 2, device=x.device)
    b_idx = torch.arange(1, n, 2, device=x.device)
    scores = metric[:, a_idx] @ metric[:, b_idx].transpose(1, 2)
    best, match = scores.max(-1)                                  # (B, |A|)
    order = best.argsort(-1, descending=True)
    merged_a, kept_a = order[:, :r], order[:, r:]                 # positions within A
    Bsz, D = x.shape[0], x.shape[-1]
    size = state.sizes.unsqueeze(-1)
    weighted = x * size
    xa, xb = weighted[:, a_idx], weighted[:, b_idx]
    sa, sb = size[:, a_idx], size[:, b_idx]
    dst = match.gather(1, merged_a)                               # B positions receiving merges
    moved = xa.gather(1, merged_a.unsqueeze(-1).expand(-1, -1, D))
    xb = xb.scatter_add(1, dst.unsqueeze(-1).expand(-1, -1, D), moved)
    sb = sb.scatter_add(1, dst.unsqueeze(-1), sa.gather(1, merged_a.unsqueeze(-1)))
    keep_a = a_idx[kept_a]                                        # original positions (B, |A|-r)
    new_x = torch.cat([weighted.gather(1, keep_a.unsqueeze(-1).expand(-1, -1, D)), xb], 1)
    new_size = torch.cat([size.gather(1, keep_a.unsqueeze(-1)), sb], 1)
    # Where does each current token go: kept A tokens first, then all B tokens.
    n_keep = keep_a.shape[1]
    new_pos = torch.empty(Bsz, n, dtype=torch.long, device=x.device)
    new_pos.scatter_(1, keep_a, torch.arange(n_keep, device=x.device).expand(Bsz, -1))
    new_pos[:, b_idx] = n_keep + torch.arange(len(b_idx), device=x.device)
    new_pos.scatter_(1, a_idx[merged_a], n_keep + dst)
    source = new_pos.gather(1, state.source)
    return new_x / new_size, MergeState(new_size.squeeze(-1), source)


def merges_for_keep_ratio(keep_ratio: float, n_tokens: int, depth: int) -> int:
    """The constant r per block whose mean kept-token ratio over ``depth`` blocks is closest to
    ``keep_ratio`` (block l processes N − r·l tokens)."""
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must lie in (0, 1], got {keep_ratio}.")
    mean_steps = (depth - 1) / 2
    return max(0, round((1 - keep_ratio) * n_tokens / mean_steps)) if depth > 1 else 0


class TokenMergingSegmenter(nn.Module):
    """A trained :class:`VideoSegmenter` run with ``r`` token merges per block (no training)."""

    def __init__(self, segmenter: VideoSegmenter, r: int):
        super().__init__()
        if r < 0:
            raise ValueError(f"r (merges per block) must be >= 0, got {r}.")
        self.segmenter, self.r = segmenter, int(r)

    def forward_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone tokens unmerged to the full grid (B, N, D), and tokens per block (depth,)."""
        seg = self.segmenter
        x = seg.embed(images)
        B, N, _ = x.shape
        state = MergeState(x.new_ones(B, N), torch.arange(N, device=x.device).expand(B, -1))
        counts = []
        for block in seg.blocks:
            counts.append(x.shape[1])
            metric = block.attn.keys(block.norm1(x))  # the keys of this block's attention
            x = block.attend(x, attn_bias=state.sizes.log())
            x, state = bipartite_merge(x, metric, state, self.r)
            x = block.feed_forward(x)
        full = x.gather(1, state.source.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return full, torch.tensor(counts, dtype=torch.float) / N

    def forward(self, images: torch.Tensor) -> dict:
        tokens, _ = self.forward_tokens(images)
        return self.segmenter.decode(tokens, images)

    @torch.no_grad()
    def run_clip(self, frames: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
        """Head outputs per frame of a clip (T, 3, H, W) and tokens per block (T, depth, N)."""
        outputs, ratios = [], []
        for t in range(frames.shape[0]):
            tokens, ratio = self.forward_tokens(frames[t:t + 1])
            outputs.append(self.segmenter.decode(tokens, frames[t:t + 1]))
            ratios.append(ratio)
        n = self.segmenter.config.num_tokens
        return outputs, torch.stack(ratios)[:, :, None].expand(-1, -1, n)

    @torch.no_grad()
    def run_batch(self, videos: torch.Tensor) -> tuple[list[list[dict]], torch.Tensor]:
        """``run_clip`` of each clip of ``videos`` (B, T, 3, H, W), every frame in one batch:
        outputs per clip and frame, tokens per block (B, T, depth, N)."""
        B, T = videos.shape[:2]
        frames = videos.flatten(0, 1)
        tokens, ratio = self.forward_tokens(frames)
        out = self.segmenter.decode(tokens, frames)
        n = self.segmenter.config.num_tokens
        return ([[frame_outputs(out, b * T + t) for t in range(T)] for b in range(B)],
                ratio[None, None, :, None].expand(B, T, -1, n))

    def frame_call(self, previous: torch.Tensor, frame: torch.Tensor) -> Callable[[], dict]:
        """A batch-1 call on ``frame`` (1, 3, H, W) to count and time; ``previous`` is unused."""
        self.eval()
        return lambda: self(frame)
