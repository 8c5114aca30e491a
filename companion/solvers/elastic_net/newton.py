"""A proximal Newton step on the support: Newton–CG on the non-zero weights, with a line search.

On the support (the non-zero entries, or with ``group`` the non-zero columns) the penalty is
smooth, so the objective restricted to the support and the bias is twice differentiable. Its Newton
system (H + ∇²R) Δ = −(∇f + ∇R) is solved inexactly (relative residual 0.1) by conjugate gradients
with the multinomial Hessian applied as a product (never formed): for a direction (V, v) the logits
move by U = V Xᵀ + v 1ᵀ, the softmax by P ⊙ U − P ⊙ (1ᵀ(P ⊙ U)), and H(V, v) = (that · X / N, row
sums / N). Jacobi preconditioning uses diag H = (P ⊙ (1 − P)) (X ⊙ X) / N. The step W + tΔ is
halved until it lowers the objective (Armijo); entries that cross zero stop there (the step stays in
the orthant of W, as in OWL-QN). Weights enter the support through the proximal-gradient steps
between Newton steps (an entry that entered the Newton step in the orthant −sign ∇f, as OWL-QN
would, measured no fewer steps)."""

from __future__ import annotations

import torch
from torch import Tensor

from .problem import _penalty, _softmax_ce

_CG_MAX = 60  # conjugate-gradient iterations per Newton step
_ARMIJO = 1e-4


def _penalty_terms(weight: Tensor, mask: Tensor, lam: float, alpha: float,
                   group: bool) -> tuple[Tensor, Tensor]:
    """Gradient of the penalty on the support ``mask`` and the diagonal of its Hessian there."""
    ridge = lam * (1 - alpha)
    if group:
        norm = weight.norm(dim=0, keepdim=True).clamp_min(1e-300)
        unit = weight / norm
        return (lam * alpha * unit + ridge * weight) * mask, ridge + lam * alpha * (1 - unit.pow(2)) / norm
    return (lam * alpha * weight.sign() + ridge * weight) * mask, torch.full_like(weight, ridge)


def _hessian_product(v: Tensor, x1: Tensor, p: Tensor, weight: Tensor, lam: float, alpha: float,
                     group: bool, mask: Tensor) -> Tensor:
    """H v for a direction v (C, k + 1) over (W, b): the cross-entropy's Hessian plus the penalty's.

    ``x1`` is X with a column of ones (the bias), ``p`` the softmax (C, N); entries off the support
    ``mask`` (C, k) are fixed at zero. Group: ∇²(λα‖w‖ + λ(1−α)/2‖w‖²) = λα (I − ŵŵᵀ)/‖w‖ + λ(1−α) I.
    """
    k = weight.shape[1]
    s = torch.mul(p, v @ x1.T)  # P ⊙ U
    s -= p * s.sum(dim=0, keepdim=True)
    out = (s @ x1) / x1.shape[0]
    v_w = v[:, :k] * mask
    if group:
        norm = weight.norm(dim=0, keepdim=True).clamp_min(1e-300)
        unit = weight / norm
        out[:, :k] += lam * (1 - alpha) * v_w + lam * alpha * (v_w - unit * (unit * v_w).sum(
            dim=0, keepdim=True)) / norm
    else:
        out[:, :k] += lam * (1 - alpha) * v_w
    out[:, :k] *= mask
    return out


def newton_step(x: Tensor, labels: Tensor, onehot_t: Tensor, weight: Tensor, bias: Tensor, f: Tensor,
                p: Tensor, lam: float, alpha: float, group: bool
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """One proximal Newton step from (W, b) with loss ``f`` and softmax ``p`` (C, N) on columns ``x``.

    Returns (W, b, loss, softmax, accepted); when no step length lowers the objective the input
    point comes back with ``accepted=False``.
    """
    n = x.shape[0]
    full_mask = (weight != 0).any(dim=0, keepdim=True).expand_as(weight) if group else weight != 0
    if not full_mask.any():
        return weight, bias, f, p, False
    # only the columns with a non-zero weight take part; the bias is a last column of ones, so
    # (W, b) is one (C, k + 1) matrix, free on the support and in b
    cols = torch.nonzero(full_mask.any(dim=0)).flatten()
    w_all, weight, mask = weight, weight[:, cols], full_mask[:, cols]
    x = x[:, cols]
    k = x.shape[1]
    x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    free = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    pen_grad, pen_diag = _penalty_terms(weight, mask, lam, alpha, group)
    grad = ((p - onehot_t) @ x1) / n
    grad[:, :k] += pen_grad
    grad *= free
    pq = p * (1 - p)
    diag = (pq @ (x1 * x1)) / n
    diag[:, :k] += pen_diag
    diag = torch.where(free, diag + 1e-12 * float(diag.mean()), torch.ones_like(diag))
    # preconditioned conjugate gradients for H Δ = −g, to a relative residual of 0.1 (an inexact Newton step)
    r = -grad
    norm0 = float(r.norm())
    target = 0.1 * norm0
    d = torch.zeros_like(r)
    z = r / diag
    s_dir = z.clone()
    rz = float((r * z).sum())
    for _ in range(_CG_MAX):
        h = _hessian_product(s_dir, x1, p, weight, lam, alpha, group, mask)
        curv = float((s_dir * h).sum())
        if not curv > 0:
            break
        step = rz / curv
        d += step * s_dir
        r -= step * h
        if float(r.norm()) <= target:
            break
        z = r / diag
        rz_new = float((r * z).sum())
        s_dir = z + (rz_new / rz) * s_dir
        rz = rz_new
    slope = float((grad * d).sum())
    if slope < 0:
        before = float(f) + float(_penalty(weight, lam, alpha, group))
        d_w, d_b, t = d[:, :k], d[:, k], 1.0
        for _ in range(20):
            w_new = weight + t * d_w
            if not group:  # stay in the orthant of W: entries that cross zero stop at zero
                w_new = torch.where(w_new * weight > 0, w_new, torch.zeros_like(w_new))
            b_new = bias + t * d_b
            f_new, p_new = _softmax_ce(torch.addmm(b_new[:, None], w_new, x.T), labels)
            after = float(f_new) + float(_penalty(w_new, lam, alpha, group))
            if after <= before + _ARMIJO * t * slope:
                w_out = w_all.clone()
                w_out[:, cols] = w_new
                return w_out, b_new, f_new, p_new, True
            t *= 0.5
    return w_all, bias, f, p, False
