"""The certified duality gap of the elastic-net problem (see the package docstring)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .problem import _Problem


def _dual(prob: _Problem, p_t: Tensor, grad_w: Tensor, cols: Tensor | None, lam: float, alpha: float,
          group: bool) -> float:
    """A dual value D(G) ≤ P* from the softmax ``p_t`` (C, N) and ``grad_w`` = (P − Y)ᵀX/N on ``cols``.

    Q = (1−t)(P + δ/N) + t·π with δ = n − Pᵀ1 (so Σ_i q_i = n) and the least t ∈ [0, 1] that makes
    Q ≥ 0 (π = n/N); then G_κ = κ(Q − Y)/N for the better of κ = 1 and the κ that puts Gᵀ X in the
    domain of R*'s flat part (for α = 1 only the latter). Gᵀ X is combined from ``grad_w``, so no
    product with X is needed, and D(G_κ) is closed-form in κ given three sums over Q.
    Columns outside ``cols`` are taken to have W = 0 and a zero gradient (the restricted problem).
    """
    n = p_t.shape[1]
    p = p_t.double()
    pi = prob.counts / n
    delta = prob.counts - p.sum(dim=1)
    # the least t is set by each class's smallest entry of A = P + δ/N (−a/(π − a) falls with a)
    low = p.amin(dim=1) + delta / n
    neg = low < 0
    t = float((-low[neg] / (pi[neg] - low[neg])).max()) if bool(neg.any()) else 0.0
    t = min(max(t, 0.0), 1.0)
    # Q = (1−t)P + ((1−t)δ/N + tπ) 1ᵀ; clamp: rounding below 0 only, ~1e-17
    q = (p * (1 - t)).add_(((1 - t) * delta / n + t * pi)[:, None]).clamp_min_(0)
    col_mean = prob.col_mean if cols is None else prob.col_mean[cols]
    class_mean = prob.class_mean if cols is None else prob.class_mean[:, cols]
    # Gᵀ X = (1−t)(P−Y)ᵀX/N + ((1−t)δ/N + tπ) x̄ᵀ − t YᵀX/N  (class-major: (C, d))
    m = (1 - t) * grad_w.double() + ((1 - t) * delta / n + t * pi)[:, None] * col_mean[None] - t * class_mean
    score = m.norm(dim=0) if group else m.abs()
    top = float(score.max()) if score.numel() else 0.0
    flat = min(1.0, lam * alpha / top) if top > 0 else 1.0
    high = flat if alpha >= 1 else 1.0
    # Q_κ = (1−κ)Y + κQ: off the labels q_κ = κq, on them a_i = 1 − κ(1 − q_{i,y_i})
    q_true = q.gather(0, prob.labels[None]).squeeze(0)
    total_xlogx = -float(torch.special.entr(q).sum())
    true_xlogx = float(torch.xlogy(q_true, q_true).sum())
    off_mass, off_xlogx = n - float(q_true.sum()), total_xlogx - true_xlogx
    miss = (1 - q_true).cpu().numpy()
    excess = score[score > lam * alpha].cpu().numpy()

    def value(kappa: float) -> float:
        a_true = 1 - kappa * miss
        ent = np.sum(a_true * np.log(np.where(a_true > 0, a_true, 1.0)))
        ent += kappa * off_xlogx + (kappa * math.log(kappa) * off_mass if kappa > 0 else 0.0)
        return -ent / n - _conjugate_penalty(kappa * excess, lam, alpha)

    return max(value(flat), value(high))


def _conjugate_penalty(score: np.ndarray, lam: float, alpha: float) -> float:
    """R*(V) for R = λ(α‖·‖₁ + (1−α)/2‖·‖²) from the scores |V| (group: column norms ‖V_:,j‖₂);
    +inf outside the domain. Scores ≤ λα contribute nothing and may be left out."""
    excess = np.clip(score - lam * alpha, 0, None)
    if lam * (1 - alpha) > 0:
        return float(np.sum(excess ** 2)) / (2 * lam * (1 - alpha))
    return 0.0 if excess.size == 0 or float(excess.max()) <= 1e-12 * max(lam, 1e-300) else math.inf


def _relative_gap(primal: float, dual: float) -> float:
    return max(primal - dual, 0.0) / max(abs(primal), 1e-300)
