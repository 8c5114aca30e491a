"""VPP's selection modules: the temporal mapping module (Map-SM) and SViT-style selective modules.

For frame t the temporal mapping module matches every early token of frame t to an early token of
frame t−1 (similarity plus a distance prior), copies that token's *deep* feature from frame t−1,
and scores it with a small MLP: deep features are foreground-selective, so the copy tells where the
objects are now. The top ρ_map·N tokens are kept (straight-through top-K). Later layers use
selective modules that keep the top ρ_l·N tokens of their own scores the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vit import Mlp


def straight_through_topk(scores: torch.Tensor, k: int, among: torch.Tensor | None = None,
                          rank: torch.Tensor | None = None) -> torch.Tensor:
    """Hard top-k mask with the gradient of the soft scores: y − sg(s) + s (Map-SM step 8).

    ``among`` (B, N) restricts the choice to the tokens where it is 1; ``rank`` (default: the
    scores) is what the top k are chosen by. Without a gradient to carry, the hard mask itself
    (exact zeros and ones).
    """
    ranked = scores if rank is None else rank
    ranked = ranked if among is None else ranked.masked_fill(among < 0.5, float("-inf"))
    hard = torch.zeros_like(scores).scatter_(-1, ranked.topk(k, dim=-1).indices, 1.0)
    if not (scores.requires_grad and torch.is_grad_enabled()):
        return hard
    return hard - scores.detach() + scores


def keep_count(ratio: float, n: int) -> int:
    """Tokens kept at keep ratio ``ratio`` of ``n``: ⌊ρ·n⌋, at least one."""
    return max(1, math.floor(ratio * n + 1e-6))


class SelectiveModule(nn.Module):
    """Per-token keep score s = softmax(MLP(LN(x)))[keep] (D → D/4 → 2), kept under a hard budget.

    The paper decides per token (hard Gumbel) and pulls the kept share towards ρ_l with a ratio
    loss; on our data that loss is too weak next to the task loss to bind. Here the module keeps
    exactly ⌊ρ_l N⌋ of the tokens still kept, the best-scored ones, with the straight-through
    gradient of the soft scores (as Map-SM does): the task loss reaches the scores through the
    soft keep mask, and the ratio is met by construction. In training the scores carry Gumbel
    noise of scale 1/τ.
    """

    def __init__(self, dim: int, tau: float = 10.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, dim // 4), 2)
        self.tau = tau

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft keep scores s (B, N) in (0, 1) and what top-k ranks by: in training s itself
        (noisy), at evaluation the logit margin, in the order of s but never tied at s = 1."""
        logits = self.mlp(self.norm(x))
        s = keep_scores(logits, self.tau, self.training)
        return s, (s if self.training else logits[..., 0] - logits[..., 1])

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        """What top-k ranks by at evaluation, the logit margin (B, N), without the scores."""
        logits = self.mlp(self.norm(x))
        return logits[..., 0] - logits[..., 1]


def keep_scores(logits: torch.Tensor, tau: float, noisy: bool) -> torch.Tensor:
    """s = softmax(f)[..., 0] of f = LogSoftmax(logits) (channel 0 = keep); with ``noisy`` a soft
    Gumbel sample GumbelSoftmax(τ f, τ) instead (noise of scale 1/τ)."""
    f = F.log_softmax(logits, dim=-1)
    if noisy:
        return F.gumbel_softmax(tau * f, tau=tau, hard=False)[..., 0]
    return f.softmax(-1)[..., 0]


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

    def associate(self, early: torch.Tensor, prior: Prior) -> tuple[torch.Tensor, torch.Tensor]:
        """The previous-frame source of every token (B, N) and its copied deep feature X̂ (B, N, D).

        In training A = GumbelSoftmax_hard(τ_m Φ) and X̂ = A X_6^{t−1} (gradient to the early
        tokens); at evaluation the argmax of Φ, and X̂ is gathered by index. A single frame at
        evaluation computes Φ on its kept sources only (the same argmax, less work).
        """
        if prior.early.shape != early.shape:
            raise ValueError(f"The prior was made from tokens of shape {tuple(prior.early.shape)} "
                             f"but this frame has {tuple(early.shape)}: frames of one clip must have "
                             "the same size; start a new clip (prior=None) when the size changes.")
        sources = prior.keep > 0.5
        sources = sources | ~sources.any(1, keepdim=True)  # a frame that kept nothing: any source
        if not self.training and early.shape[0] == 1:
            kept = sources[0].nonzero().squeeze(1)
            phi = self.phi_dist.index_select(1, kept).addmm_(early[0], prior.early[0, kept].T)
            source = kept[phi.argmax(-1)]
            return source[None], prior.deep.index_select(1, source)
        bias = self.phi_dist.masked_fill(~sources[:, None, :], float("-inf"))
        phi = torch.baddbmm(bias, early, prior.early.transpose(1, 2))
        if self.training:
            A = F.gumbel_softmax(self.tau_map * phi, tau=self.tau_map, hard=True)
            return A.argmax(-1), A @ prior.deep
        source = phi.argmax(-1)
        return source, prior.deep.gather(1, source.unsqueeze(-1).expand(-1, -1, prior.deep.shape[-1]))

    def forward(self, early: torch.Tensor, prior: Prior, keep_ratio: float) -> Mapping:
        source, mapped = self.associate(early, prior)
        logits = self.mlp(self.norm(mapped))
        B, N, _ = logits.shape
        k = keep_count(keep_ratio, N)
        if not self.training:  # s = softmax(f)[..., 0] = sigmoid of the smoothed logit margin
            s = torch.sigmoid(self._smooth(logits[..., :1] - logits[..., 1:])[..., 0])
            hard = torch.zeros_like(s).scatter_(-1, s.topk(k, dim=-1).indices, 1.0)
            return Mapping(hard, s, source, mapped)
        f = self._smooth(F.log_softmax(logits, dim=-1))
        s = keep_scores(f, self.tau_select, self.training)
        return Mapping(straight_through_topk(s, k), s, source, mapped)

    def _smooth(self, f: torch.Tensor) -> torch.Tensor:
        """The k×k mean filter (edges replicated) of per-token channels f (B, N, C) on the grid."""
        B, N, C = f.shape
        k = self.smoothing
        f = f.transpose(1, 2).reshape(B, C, self.grid, self.grid)
        f = F.avg_pool2d(F.pad(f, (k // 2,) * 4, mode="replicate"), k, stride=1)
        return f.reshape(B, C, N).transpose(1, 2)
