"""Proximal Newton steps on the screened columns for small and middle-sized supports.

Each iteration certifies the current point (the softmax residual is the dual point; the relative
duality gap ≤ ``tol`` stops) and then takes up to two steps:

1. When zero weights violate their optimality condition (|∂f/∂w| = λα + e > λα) by enough to keep
   the gap above ``tol`` (their share of the gap, Σ e²/(2λ(1−α)), is above a tenth of tol·P; at α =
   1, any violation), a proximal quasi-Newton step finds the new support: the loss is modelled per
   class k by its gradient and the weighted Gram G_k = [X, 1]ᵀ diag(p_k(1 − p_k)) [X, 1] / N (the
   diagonal blocks of the multinomial Hessian), the model plus the exact penalty is minimised by
   cyclic coordinate descent over the columns, all classes at once (glmnet's inner loop on the Gram
   matrices: no pass over the data), and the step is shortened until it lowers the objective
   (Armijo; Yuan, Ho & Lin, 2012). Only zero weights that violate their condition may join.
2. A Newton–CG step on the support (the non-zero weights, where the penalty is smooth): conjugate
   gradients on the exact Hessian (applied as a product, never formed) preconditioned by the
   Cholesky factors of the same per-class Grams restricted to each class's support, then a line
   search that stops entries at zero when they would change sign (Lee, Sun & Saunders, 2014).
   Lasso: where the step with the weights it takes across zero stopped at zero does not lower the
   objective enough, those weights are sent to zero and CG solves again for the others with that
   move fixed, so the line search rarely needs to shorten the step; where that step gains less
   than a tenth of what it promised, the first one is backtracked as well and the better kept.
   The block preconditioner takes the features' correlations out of the system, which is what
   stalled unpreconditioned (Jacobi) CG at small λ; the class coupling −p_k p_l is left to CG.

The softmax and loss at the start come from the caller (the accepted point of the previous λ, or the
predictor's), and those of the returned point go back to it for the full certificate, so no pass
over the data is repeated. The Grams cost one product of the (C, N) curvatures with the (s(s+1)/2,
N) pairwise column products, once per λ; they stay as the metric and the preconditioner while the
solve runs. The pairwise products are cached per column set, so the path computes them again only
when the screened columns change. The loss, softmax and certificate are in float64; the Hessian
products run in float32 (they only steer the step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .dual import _dual, _relative_gap
from .problem import _penalty, _Problem, _softmax_ce

_ARMIJO = 1e-4
_SWEEPS = 4  # coordinate-descent sweeps over the quadratic model per quasi-Newton step
_CG_MAX = 50  # conjugate-gradient iterations per Newton step
_CG_RTOL = 0.1  # relative residual at which CG stops (an inexact Newton step)
GRAM_MAX = 160  # screened columns up to which the Gram matrices are formed (C·s² memory)


def _pair_products(x1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Products x_i x_j of the columns of ``x1`` over the upper triangle (i ≤ j): (s(s+1)/2, N).

    Row-major (pairs by samples), written row block by row block into one tensor: gathering the
    columns of an (N, s) tensor, or the rows for every pair, is several times slower.
    """
    s1 = x1.shape[1]
    iu, ju = torch.triu_indices(s1, s1, device=x1.device)
    rows = x1.T.contiguous()
    prod = torch.empty(len(iu), x1.shape[0], dtype=x1.dtype, device=x1.device)
    start = 0
    for i in range(s1):  # the pairs (i, j ≥ i), in the order of triu_indices
        torch.mul(rows[i:], rows[i], out=prod[start:start + s1 - i])
        start += s1 - i
    return prod, iu, ju


def _class_grams(curv: Tensor, pairs: tuple[Tensor, Tensor, Tensor], size: int) -> Tensor:
    """G_k = X1ᵀ diag(curv_k) X1 for every class: (C, s, s) from ``curv`` (C, N)."""
    prod, iu, ju = pairs
    tri = (curv.to(prod.dtype) @ prod.T).to(curv.dtype)
    gram = torch.zeros(curv.shape[0], size, size, dtype=curv.dtype, device=curv.device)
    gram[:, iu, ju] = tri
    gram[:, ju, iu] = tri
    return gram


def _model_minimiser(grad: Tensor, gram: Tensor, z: Tensor, lam: float, alpha: float, group: bool,
                     sweeps: int = _SWEEPS, movable: Tensor | None = None) -> Tensor:
    """Coordinate descent on gᵀ(u − z) + ½ Σ_k (u_k − z_k)ᵀ G_k (u_k − z_k) + R(u) from u = z.

    ``z`` = [W, b] (C, s + 1), the last column the unpenalised bias. Each step updates one column for
    all classes (group: one proximal step on the column's norm, with the largest class curvature).
    ``movable`` (C, s, bool; not for the group variant, and holding every non-zero weight) keeps
    the other weights at zero.
    """
    s = z.shape[1] - 1
    # column-major copies, so that the column updated is contiguous: u (s + 1, C) and the model's
    # gradient r = g + G_k (u_k − z_k) at u
    u, r = z.T.contiguous(), grad.T.contiguous()
    rows = gram.permute(1, 2, 0).contiguous()  # rows[j] = (G_k[j, :])_k as (s + 1, C)
    diag = gram.diagonal(dim1=1, dim2=2).T.contiguous()
    keep = None if movable is None else movable.T.to(z.dtype).contiguous()
    l1, ridge = lam * alpha, lam * (1 - alpha)
    shrink = -1 / (diag + ridge)
    scale = float(z[:, :s].abs().max()) if s else 0.0
    for _ in range(sweeps):
        before = u.clone()
        for j in range(s + 1):
            old = u[j]
            if j == s:
                new = old - r[j] / diag[j].clamp_min(1e-300)
            elif group:
                a_max = float(diag[j].max())
                v = old - r[j] / max(a_max, 1e-300)
                norm = float(v.norm())
                new = v * max(0.0, 1 - l1 / (a_max * norm)) / (1 + ridge / a_max) if norm > 0 else v
            else:  # the minimiser over u_j: −S(r_j − G_jj u_j, λα) / (G_jj + λ(1−α)), S soft-thresholding
                new = torch.nn.functional.softshrink(torch.addcmul(r[j], old, diag[j], value=-1), l1)
                new *= shrink[j]
                if keep is not None:
                    new *= keep[j]
            r.addcmul_(rows[j], new - old)
            u[j] = new
        scale = max(scale, float(u[:s].abs().max()) if s else 0.0)
        if float((u - before).abs().max()) <= 1e-6 * max(scale, 1e-12):
            break
    return u.T


def _support_terms(weight: Tensor, mask: Tensor, lam: float, alpha: float,
                   group: bool) -> tuple[Tensor, Tensor]:
    """Gradient of the penalty on the support ``mask`` and the diagonal of its Hessian there."""
    ridge = lam * (1 - alpha)
    if group:
        norm = weight.norm(dim=0, keepdim=True).clamp_min(1e-300)
        unit = weight / norm
        return ((lam * alpha * unit + ridge * weight) * mask,
                (ridge + lam * alpha * (1 - unit.pow(2)) / norm) * mask)
    return (lam * alpha * weight.sign() + ridge * weight) * mask, torch.full_like(weight, ridge) * mask


def _newton_cg_step(x1: Tensor, labels: Tensor, onehot_t: Tensor, weight: Tensor, bias: Tensor, p: Tensor,
                    primal: float, gram: Tensor, lam: float, alpha: float,
                    group: bool) -> tuple[Tensor, Tensor, Tensor, float, bool]:
    """One Newton–CG step on the support of (W, b) (see the module docstring).

    Returns (W, b, softmax, objective, accepted); without a decrease the input comes back.
    """
    n, s1 = x1.shape
    s = s1 - 1
    ridge = lam * (1 - alpha)
    mask = (weight != 0).any(dim=0, keepdim=True).expand_as(weight) if group else weight != 0
    if not mask.any():
        return weight, bias, p, primal, False
    free = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1).to(x1.dtype)
    pen_grad, pen_diag = _support_terms(weight, mask, lam, alpha, group)
    g = (p - onehot_t) @ x1 / n
    g[:, :s] += pen_grad
    g *= free
    norm = weight.norm(dim=0, keepdim=True).clamp_min(1e-300) if group else None

    x1h, ph = x1.float(), p.float()

    def hess(v: Tensor, free: Tensor) -> Tensor:  # (H + ∇²R) v on the entries ``free``
        v = v * free
        u = ph * (v.float() @ x1h.T)
        u -= ph * u.sum(dim=0, keepdim=True)
        out = (u @ x1h).to(v.dtype) / n
        vw = v[:, :s]
        out[:, :s] += ridge * vw
        if group:
            unit = weight / norm
            out[:, :s] += lam * alpha * (vw - unit * (unit * vw).sum(dim=0, keepdim=True)) / norm
        return out * free

    def search(d: Tensor, tries: int, t: float = 1.0) -> tuple[Tensor, Tensor, Tensor, float, bool]:
        """Backtracking from ``t`` (at most ``tries`` points); entries that change sign stop at 0."""
        slope = float((g * d).sum())
        for _ in range(tries if slope < 0 else 0):
            w_new = weight + t * d[:, :s]
            if not group:
                w_new = torch.where(w_new * weight > 0, w_new, torch.zeros_like(w_new))
            b_new = bias + t * d[:, s]
            f_new, p_new = _softmax_ce(torch.addmm(b_new[:, None], w_new, x1[:, :s].T), labels)
            after = float(f_new) + float(_penalty(w_new, lam, alpha, group))
            if after <= primal + _ARMIJO * t * slope:
                return w_new, b_new, p_new, after, True
            t *= 0.5
        return weight, bias, p, primal, False

    d = _conjugate_gradients(-g, free, gram, pen_diag, hess)
    cross = (weight != 0) & ((weight + d[:, :s]) * weight <= 0)
    if group or not cross.any():
        return search(d, 20)
    # Lasso, weights the step takes across zero: the full step with them stopped at zero, and
    # where that does not lower the objective enough, the weights sent to zero and the others'
    # step solved again with that move fixed (stopping them after a step made for weights that
    # cross leaves the others' step wrong; backtracking it took 5 to 10 trials)
    step = search(d, 1)
    if step[-1]:
        return step
    to_zero = torch.zeros_like(d)
    to_zero[:, :s] = torch.where(cross, -weight, 0.0)
    free[:, :s] *= ~cross
    solved = to_zero + _conjugate_gradients(-g - hess(to_zero, torch.ones_like(free)), free, gram,
                                            pen_diag, hess)
    step = search(solved, 20)
    if step[3] - primal <= 0.1 * float((g * solved).sum()):
        return step
    # less than a tenth of the decrease it promised (a weight sent to zero that belongs on the
    # support, e.g. one the support step has just switched in): backtrack the first step as well
    other = search(d, 19, t=0.5)  # t = 1 failed above
    return other if other[3] < step[3] else step


def _conjugate_gradients(rhs: Tensor, free: Tensor, gram: Tensor, pen_diag: Tensor,
                         hess: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Preconditioned CG for (H + ∇²R) d = rhs on the entries ``free`` (to ``_CG_RTOL``).

    The preconditioner is the Cholesky factor of each class's Gram restricted to its free entries
    (plus the penalty's diagonal ``pen_diag``); ``hess(v, free)`` is the Hessian product.
    """
    s = pen_diag.shape[1]
    pre = gram * (free[:, :, None] * free[:, None, :])
    diag = pre.diagonal(dim1=1, dim2=2)
    diag += 1 - free
    diag[:, :s] += pen_diag * free[:, :s]
    chol, _ = torch.linalg.cholesky_ex(pre)

    def precond(r: Tensor) -> Tensor:
        return torch.cholesky_solve(r[..., None], chol).squeeze(-1) * free
    r = rhs * free
    target = _CG_RTOL * float(r.norm())
    d = torch.zeros_like(r)
    zv = precond(r)
    sd = zv.clone()
    rz = float((r * zv).sum())
    for _ in range(_CG_MAX):
        h = hess(sd, free)
        curv = float((sd * h).sum())
        if not curv > 0:
            break
        a = rz / curv
        d += a * sd
        r -= a * h
        if float(r.norm()) <= target:
            break
        zv = precond(r)
        rz_new = float((r * zv).sum())
        sd = zv + (rz_new / rz) * sd
        rz = rz_new
    return d


def _quasi_newton_step(x1: Tensor, labels: Tensor, grad: Tensor, weight: Tensor, bias: Tensor,
                       primal: float, gram: Tensor, lam: float, alpha: float,
                       group: bool) -> tuple[Tensor, Tensor, Tensor, float] | None:
    """Step to the block-diagonal model's minimiser, shortened until the objective decreases.

    Lasso: of the zero weights only those that violate their optimality condition may join. The
    model leaves out the classes' coupling, and through a class's Gram it would switch in weights
    within their threshold that the full Newton step then switches out again, round after round.
    """
    s = weight.shape[1]
    z = torch.cat([weight, bias[:, None]], dim=1)
    movable = None if group else (weight != 0) | (grad[:, :s].abs() > lam * alpha)
    d = _model_minimiser(grad, gram, z, lam, alpha, group, movable=movable) - z
    decrease = float((grad * d).sum()) + float(_penalty(weight + d[:, :s], lam, alpha, group)) \
        - float(_penalty(weight, lam, alpha, group))
    t = 1.0
    for _ in range(30):
        w_new, b_new = weight + t * d[:, :s], bias + t * d[:, s]
        f_new, p_new = _softmax_ce(torch.addmm(b_new[:, None], w_new, x1[:, :s].T), labels)
        after = float(f_new) + float(_penalty(w_new, lam, alpha, group))
        if after <= primal + _ARMIJO * t * min(decrease, 0.0):
            return w_new, b_new, p_new, after
        t *= 0.5
    return None


def newton_solve(prob: _Problem, idx: Tensor, weight: Tensor, bias: Tensor, p: Tensor, loss: float,
                 lam: float, alpha: float, group: bool, tol: float, max_iter: int,
                 above: bool = False) -> tuple[Tensor, Tensor, Tensor, float, int, bool, float]:
    """Newton iterations on the columns ``idx`` until the restricted problem's gap is ≤ ``tol``.

    ``p`` (C, N) and ``loss`` are the float64 softmax and mean cross-entropy at the start (the
    columns outside ``idx`` have W = 0, so they are those of the restricted problem, too); ``above``
    says its gap is known to exceed ``tol`` (the first check is skipped). Returns (W, b) in float64,
    the softmax and loss there, the iterations, whether the gap was met and the restricted relative
    gap at the returned point (inf where it was not computed there).
    """
    x = prob.x[:, idx].double()
    n, s = x.shape
    labels, onehot_t = prob.labels, prob.onehot_t.double()
    x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    key = tuple(idx.tolist())
    if key not in prob.pairs:
        prob.pairs.clear()
        prob.pairs[key] = _pair_products(x1.float())
    weight, bias, p = weight.double(), bias.double(), p.double()
    primal = loss + float(_penalty(weight, lam, alpha, group))
    gram, gap = None, math.inf
    for it in range(1, max_iter + 1):
        grad = (p - onehot_t) @ x1 / n
        if not (above and it == 1):
            gap = _relative_gap(primal, _dual(prob, p, grad[:, :s], idx, lam, alpha, group))
            if gap <= tol:
                return weight, bias, p, primal - float(_penalty(weight, lam, alpha, group)), it - 1, True, gap
        if gram is None:
            gram = _class_grams(p * (1 - p) / n, prob.pairs[key], s + 1)
            gram.diagonal(dim1=1, dim2=2).add_(1e-10 + 1e-6 * lam)
        moved = False
        if _support_is_short(grad[:, :s], weight, primal, lam, alpha, group, tol):
            step = _quasi_newton_step(x1, labels, grad, weight, bias, primal, gram, lam, alpha, group)
            if step is not None:
                weight, bias, p, primal = step
                moved = True
        weight, bias, p, primal, accepted = _newton_cg_step(x1, labels, onehot_t, weight, bias, p, primal,
                                                            gram, lam, alpha, group)
        if not (moved or accepted):
            return weight, bias, p, primal - float(_penalty(weight, lam, alpha, group)), it, False, gap
        gap = math.inf
    return weight, bias, p, primal - float(_penalty(weight, lam, alpha, group)), max_iter, False, gap


def _support_is_short(grad: Tensor, weight: Tensor, primal: float, lam: float, alpha: float, group: bool,
                      tol: float) -> bool:
    """Whether zero weights violate their optimality condition by enough to need a support step.

    A zero weight with |∂f/∂w| = λα + e adds about e²/(2λ(1−α)) to the duality gap (its share of
    R*); while all of them together add less than a tenth of the gap allowed (tol·P), Newton steps on
    the support alone reach the tolerance and the quasi-Newton step is skipped. At α = 1 the gap is
    first-order in e, and any violation takes the step.
    """
    score = grad.norm(dim=0) if group else grad.abs()
    zero = (weight == 0).all(dim=0) if group else weight == 0
    excess = (score - lam * alpha)[zero & (score > lam * alpha * (1 + 1e-9))]
    if excess.numel() == 0:
        return False
    if alpha >= 1:
        return True
    return float(excess.pow(2).sum()) / (2 * lam * (1 - alpha)) > 0.1 * tol * primal
