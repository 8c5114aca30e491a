"""The certified duality gap of the elastic-net problem (see the package docstring)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .problem import _Problem


def _conjugate_penalty(v: Tensor, lam: float, alpha: float, group: bool) -> float:
    """R*(V) for R = λ(α‖·‖₁ + (1−α)/2‖·‖²) (group: Σ_j ‖·_:,j‖₂); +inf outside the domain."""
    score = v.norm(dim=0) if group else v.abs()
    excess = (score - lam * alpha).clamp_min(0)
    if lam * (1 - alpha) > 0:
        return float(excess.pow(2).sum()) / (2 * lam * (1 - alpha))
    return 0.0 if float(excess.max()) <= 1e-12 * max(lam, 1e-300) else math.inf


def _dual(prob: _Problem, p_t: Tensor, grad_w: Tensor, cols: Tensor | None, lam: float, alpha: float,
          group: bool) -> float:
    """A dual value D(G) ≤ P* from the softmax ``p_t`` (C, N) and ``grad_w`` = (P − Y)ᵀX/N on ``cols``.

    Q = (1−t)(P + δ/N) + t·π with δ = n − Pᵀ1 (so Σ_i q_i = n) and the least t ∈ [0, 1] that makes
    Q ≥ 0 (π = n/N); then G_κ = κ(Q − Y)/N for the better of κ = 1 and the κ that puts Gᵀ X in the
    domain of R*'s flat part. Gᵀ X is combined from ``grad_w``, so no extra product with X is needed.
    Columns outside ``cols`` are taken to have W = 0 and a zero gradient (the restricted problem).
    """
    n = p_t.shape[1]
    p = p_t.double()
    pi = prob.counts / n
    delta = prob.counts - p.sum(dim=1)
    a = p + (delta / n)[:, None]
    neg = a < 0
    t = float((-a[neg] / (pi[:, None].expand_as(a)[neg] - a[neg])).max()) if neg.any() else 0.0
    t = min(max(t, 0.0), 1.0)
    q = ((1 - t) * a + t * pi[:, None]).clamp_min(0)  # clamp: rounding below 0 only, ~1e-17
    col_mean = prob.col_mean if cols is None else prob.col_mean[cols]
    class_mean = prob.class_mean if cols is None else prob.class_mean[:, cols]
    # Gᵀ X = (1−t)(P−Y)ᵀX/N + ((1−t)δ/N + tπ) x̄ᵀ − t YᵀX/N  (class-major: (C, d))
    m = (1 - t) * grad_w.double() + ((1 - t) * delta / n + t * pi)[:, None] * col_mean[None] - t * class_mean
    onehot = prob.onehot_t.double()
    score = m.norm(dim=0) if group else m.abs()
    top = float(score.max()) if score.numel() else 0.0
    kappas = [min(1.0, lam * alpha / top) if top > 0 else 1.0]
    if alpha < 1:
        kappas.append(1.0)
    best = -math.inf
    for kappa in kappas:
        qk = (1 - kappa) * onehot + kappa * q
        value = -float(torch.xlogy(qk, qk).sum()) / n - _conjugate_penalty(-kappa * m, lam, alpha, group)
        best = max(best, value)
    return best


def _relative_gap(primal: float, dual: float) -> float:
    return max(primal - dual, 0.0) / max(abs(primal), 1e-300)
