"""VPP's selection modules: the temporal mapping module (Map-SM) and SViT-style selective modules.

For frame t the temporal mapping module matches every early token of frame t to an early token of
frame t−1 (similarity plus a distance prior), copies that token's *deep* feature from frame t−1,
and scores it with a small MLP: deep features are foreground-selective, so the copy tells where the
objects are now. The top ρ_map·N tokens are kept (straight-through top-K). Later layers use
selective modules with hard Gumbel decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vit import Mlp


def straight_through_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Hard top-k mask with the gradient of the soft scores: y − sg(s) + s (Map-SM step 8)."""
    hard = torch.zeros_like(scores).scatter_(-1, scores.topk(k, dim=-1).indices, 1.0)
    return hard - scores.detach() + scores


def keep_count(ratio: float, n: int) -> int:
    """Tokens kept at keep ratio ``ratio`` of ``n``: ⌊ρ·n⌋, at least one."""
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
        return Mapping(straight_through_topk(s, keep_count(keep_ratio, N)), s, A.argmax(-1), mapped)
