"""Newton steps (small supports) or proximal gradient (large ones) with screening along the λ path."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ...progress import tqdm
from ...runtime import resolve_device
from .dual import _dual, _relative_gap
from .newton import GRAM_MAX, newton_solve
from .problem import (
    _check_alpha,
    _check_features,
    _check_labels,
    _check_variance,
    _logits_t,
    _make_problem,
    _penalty,
    _Problem,
    _prox,
    _softmax_ce,
    lambda_max,
)


@dataclass(frozen=True)
class ElasticNetFit:
    """One solution of the elastic-net problem at a fixed λ (``lam``) and α (``alpha``)."""

    weight: Tensor  # (n_classes, n_features), W
    bias: Tensor  # (n_classes,), b
    lam: float
    alpha: float
    group: bool
    objective: float
    n_iter: int
    converged: bool
    gap: float = math.inf  # certified relative duality gap (P − D)/P: P − P* ≤ gap·P


@dataclass(frozen=True)
class ElasticNetPath:
    """Solutions along a λ path: ``weights[i]``, ``biases[i]`` solve the problem at ``lambdas[i]``."""

    lambdas: Tensor  # (K,)
    weights: Tensor  # (K, n_classes, n_features)
    biases: Tensor  # (K, n_classes)
    objectives: Tensor  # (K,)
    train_accuracy: Tensor  # (K,)
    val_accuracy: Tensor | None  # (K,) when validation data was given
    n_iter: Tensor  # (K,) Newton (or proximal-gradient) iterations per λ
    converged: Tensor  # (K,) bool: the certified relative gap was ≤ tol within max_iter
    alpha: float
    group: bool
    seconds: float
    gaps: Tensor | None = None  # (K,) certified relative duality gap (P − D)/P ≥ relative sub-optimality

    def __len__(self) -> int:
        return len(self.lambdas)

    @property
    def features_used(self) -> Tensor:
        """Number of input features with a non-zero weight for any class, per path entry."""
        return (self.weights != 0).any(dim=1).sum(dim=1)

    @property
    def per_class(self) -> Tensor:
        """Mean number of non-zero weights per class (k), per path entry."""
        return (self.weights != 0).sum(dim=(1, 2)) / self.weights.shape[1]

    def entry(self, index: int) -> ElasticNetFit:
        """The path entry ``index`` as an ``ElasticNetFit``."""
        return ElasticNetFit(self.weights[index], self.biases[index], float(self.lambdas[index]),
                             self.alpha, self.group, float(self.objectives[index]),
                             int(self.n_iter[index]), bool(self.converged[index]),
                             math.inf if self.gaps is None else float(self.gaps[index]))


def _anderson_weights(iterates: Tensor) -> Tensor | None:
    """Anderson weights c (Σ c_k = 1) of K + 1 stacked iterates: min ‖Σ_k c_k (u_{k+1} − u_k)‖.

    ``None`` when the iterates did not move or the (regularised) system cannot be solved.
    """
    diff = (iterates[1:] - iterates[:-1]).flatten(1).double()
    gram = diff @ diff.T
    scale = float(gram.diagonal().max())
    if not scale > 0:
        return None
    ones = torch.ones(len(gram), dtype=gram.dtype, device=gram.device)
    z, info = torch.linalg.solve_ex(gram + 1e-10 * scale * torch.eye(len(gram), dtype=gram.dtype,
                                                                   device=gram.device), ones)
    if int(info) != 0 or not bool(torch.isfinite(z).all()) or float(z.sum()) == 0:
        return None
    return (z / z.sum()).to(iterates.dtype)


def _combine(weights: Tensor, stack: list[Tensor]) -> Tensor:
    return torch.tensordot(weights, torch.stack(stack), dims=1)


def _prox_gradient(prob: _Problem, idx: Tensor, weight: Tensor, bias: Tensor, lam: float, alpha: float,
                   group: bool, step: float, safe_step: float, tol: float,
                   max_iter: int) -> tuple[Tensor, Tensor, int, bool, float, Tensor | None]:
    """Proximal gradient with backtracking and Anderson acceleration on the columns ``idx``.

    Every ``_ANDERSON`` iterations the affine combination of the last iterates with Anderson's
    weights replaces the current point when it has a lower objective (Bertrand & Massias, 2021);
    logits are linear in (W, b), so its logits are combined, not recomputed. ``safe_step`` ≈ 1/L
    satisfies the sufficient-decrease test; longer steps are tried first and halved until it passes.
    Every ``_GAP_EVERY`` iterations the dual points of the current softmax and of
    its extrapolation (the same weights on the last softmax residuals; Massias et al., 2020) bound
    the new point: P(W⁺) − D ≤ tol·P(W⁺) stops. Returns (W, b, iterations, converged, last step,
    the softmax behind the best dual point, or ``None``).
    """
    x, labels, onehot_t = prob.x[:, idx], prob.labels, prob.onehot_t
    n = x.shape[0]
    # rounding noise of the loss, not a real increase; 16·eps let float32 runs stall (accepted
    # over-long steps at the noise floor) on a tight duality-gap tolerance, 1·eps does not
    slack = torch.finfo(x.dtype).eps
    z = _logits_t(x, weight, bias)
    f, p = _softmax_ce(z, labels)
    primal_hist: list[tuple[Tensor, Tensor, Tensor]] = [(weight, bias, z)]
    dual_hist: list[tuple[Tensor, Tensor]] = []
    best_dual, best_p, converged, it = -math.inf, None, False, 0
    for it in range(1, max_iter + 1):
        resid = (p - onehot_t) / n
        grad_w, grad_b = resid @ x, resid.sum(dim=1)
        step = min(step * 1.25, 64 * safe_step)  # try a longer step, the line search shortens it
        while True:
            w_new = _prox(weight - step * grad_w, step, lam, alpha, group)
            b_new = bias - step * grad_b
            z_new = _logits_t(x, w_new, b_new)
            dw, db = w_new - weight, b_new - bias
            linear = (grad_w * dw).sum() + (grad_b * db).sum()
            quad = f + linear + (dw.pow(2).sum() + db.pow(2).sum()) / (2 * step)
            f_new, p_new = _softmax_ce(z_new, labels)
            if f_new <= quad + slack * abs(float(f)) or step <= safe_step / 8:
                break
            step *= 0.5
        dual_hist = [*dual_hist[-_ANDERSON:], (p, grad_w)]
        if it % _GAP_EVERY == 0:  # every D(G) is a lower bound: keep the best
            primal = float(f_new) + float(_penalty(w_new, lam, alpha, group))
            candidates = [(p, grad_w)]
            c = _anderson_weights(torch.stack([h[0] for h in dual_hist])) \
                if len(dual_hist) == _ANDERSON + 1 else None
            if c is not None:
                candidates.append((_combine(c, [h[0] for h in dual_hist[1:]]),
                                   _combine(c, [h[1] for h in dual_hist[1:]])))
            for p_c, g_c in candidates:
                value = _dual(prob, p_c, g_c, idx, lam, alpha, group)
                if value > best_dual:
                    best_dual, best_p = value, p_c
            if _relative_gap(primal, best_dual) <= tol:
                weight, bias, converged = w_new, b_new, True
                break
        weight, bias, z, f, p = w_new, b_new, z_new, f_new, p_new
        primal_hist = [*primal_hist[-_ANDERSON:], (weight, bias, z)]
        if len(primal_hist) == _ANDERSON + 1 and it % _ANDERSON == 0:
            c = _anderson_weights(torch.stack([torch.cat([w.flatten(), b]) for w, b, _ in primal_hist]))
            if c is not None:
                w_e = _combine(c, [h[0] for h in primal_hist[1:]])
                b_e = _combine(c, [h[1] for h in primal_hist[1:]])
                z_e = _combine(c, [h[2] for h in primal_hist[1:]])
                f_e, p_e = _softmax_ce(z_e, labels)
                if float(f_e + _penalty(w_e, lam, alpha, group)) < float(f + _penalty(weight, lam, alpha,
                                                                                       group)):
                    weight, bias, z, f, p = w_e, b_e, z_e, f_e, p_e
                    primal_hist = [(weight, bias, z)]
    return weight, bias, it, converged, step, best_p


# Iterations per screening round: the KKT check on the other columns runs at least this often, so
# a tolerance the restricted problem cannot reach does not spend the whole budget on the wrong columns.
_ROUND = 500
_ANDERSON = 5  # iterates combined by the Anderson (primal) and the dual extrapolation
_GAP_EVERY = 10  # iterations between duality-gap checks (a check costs about one elementwise pass)


def _point(prob: _Problem, weight: Tensor, bias: Tensor) -> tuple[Tensor, float]:
    """The softmax (C, N) and the mean cross-entropy at (W, b), in float64 whatever the features'
    precision, so that a float32 solve is certified to far below ``tol``."""
    loss, p = _softmax_ce(_logits_t(prob.x.double(), weight.double(), bias.double()), prob.labels)
    return p, float(loss)


def _certify(prob: _Problem, weight: Tensor, p: Tensor, loss: float, lam: float, alpha: float,
             group: bool) -> tuple[Tensor, float, float]:
    """Full gradient w.r.t. W, the primal value and the certified relative gap at the point whose
    softmax is ``p`` and mean cross-entropy ``loss``."""
    grad = (p.to(prob.x.dtype) - prob.onehot_t) @ prob.x / prob.x.shape[0]
    primal = loss + float(_penalty(weight.double(), lam, alpha, group))
    return grad, primal, _relative_gap(primal, _dual(prob, p, grad, None, lam, alpha, group))


def _screen(grad: Tensor, weight: Tensor, threshold: float, group: bool) -> Tensor:
    """Columns that may be non-zero: current non-zeros plus those whose gradient passes ``threshold``."""
    score = grad.norm(dim=0) if group else grad.abs().amax(dim=0)
    return (score >= threshold) | (weight != 0).any(dim=0)


def _solve(prob: _Problem, weight: Tensor, bias: Tensor, p: Tensor, loss: float, lam: float, lam_prev: float,
           alpha: float, group: bool, tol: float,
           max_iter: int) -> tuple[Tensor, Tensor, Tensor, float, int, bool, float]:
    """Solve at λ from a warm start (W, b) with softmax ``p`` and loss ``loss`` there (``_point``),
    with strong-rule screening and a KKT check on the rest.

    The restricted problem on the screened columns is solved to a relative gap ``tol`` (Newton
    steps up to ``GRAM_MAX`` columns; proximal gradient beyond, or where Newton stalls); then the gap
    of the full problem is certified at (W, b). Columns that violate their KKT condition join; when
    none does but the full gap is still above ``tol``, the restricted problem is solved tighter.
    Returns (W, b, softmax and loss at (W, b), iterations, converged, certified relative gap of the
    full problem at (W, b)).
    """
    d = prob.x.shape[1]
    grad, primal, gap = _certify(prob, weight, p, loss, lam, alpha, group)
    if gap <= tol:  # the warm start is already good enough (e.g. at λ_max)
        return weight, bias, p, loss, 0, True, gap
    active = _screen(grad, weight, alpha * (2 * lam - lam_prev), group)
    step, total, inner_tol = 1.0 / prob.lipschitz, 0, tol
    while True:
        idx = torch.nonzero(active).flatten()
        full = len(idx) == d  # the restricted problem is the full one: its gap certifies
        p_best, w_act, converged, inner_gap, moved_off = None, weight[:, idx], False, math.inf, False
        if len(idx) <= GRAM_MAX:
            # a full gap above tol ≥ inner_tol: the first check of the full restricted problem is known
            w_act, bias, p, loss, n_iter, converged, inner_gap = newton_solve(
                prob, idx, w_act, bias, p, loss, lam, alpha, group, inner_tol, max(max_iter - total, 1),
                above=full)
            w_act, bias = w_act.to(weight.dtype), bias.to(weight.dtype)
            total += max(n_iter, 1)  # a round counts: max_iter bounds the rounds, too
        if not converged and total < max_iter:  # large supports, or Newton stalled (e.g. α = 1)
            w_act, bias, n_iter, converged, step, p_best = _prox_gradient(
                prob, idx, w_act, bias, lam, alpha, group, step, 1.0 / prob.lipschitz, inner_tol,
                min(max_iter - total, _ROUND))
            total += n_iter
            inner_gap, moved_off = math.inf, True  # the softmax p is that of the Newton point
        weight = torch.zeros_like(weight)
        weight[:, idx] = w_act
        if full and inner_gap < math.inf:
            gap, violators = inner_gap, torch.zeros_like(active)
        else:
            if moved_off:
                p, loss = _point(prob, weight, bias)
            grad, primal, gap = _certify(prob, weight, p, loss, lam, alpha, group)
            if p_best is not None:  # the inner solve's best dual point, now against every column
                g_best = (p_best - prob.onehot_t) @ prob.x / prob.x.shape[0]
                gap = min(gap, _relative_gap(primal, _dual(prob, p_best, g_best, None, lam, alpha, group)))
            score = grad.norm(dim=0) if group else grad.abs().amax(dim=0)
            violators = (~active) & (score > alpha * lam)
        if gap <= tol:
            return weight, bias, p, loss, total, True, gap
        if total >= max_iter:
            return weight, bias, p, loss, total, False, gap
        if violators.any():
            active |= violators
        elif converged:  # the restricted gap was met but the full point's dual is weaker: solve tighter
            if inner_tol == 0:  # nothing tighter to ask for: stop with the honest gap
                return weight, bias, p, loss, total, False, gap
            inner_tol *= 0.25


def _predict(lams: tuple[float, float, float], prev: tuple[Tensor, Tensor], last: tuple[Tensor, Tensor],
             group: bool) -> tuple[Tensor, Tensor] | None:
    """The next solution extrapolated linearly in log λ from the last two (a predictor step).

    Weights that would change sign (group: columns that would turn against the last one) are set to
    zero; weights (columns) at zero stay there. ``None`` when the last two λ coincide.
    """
    lam_prev, lam_last, lam = (math.log(v) for v in lams)
    if lam_last == lam_prev:
        return None
    ratio = (lam - lam_last) / (lam_last - lam_prev)
    (w0, b0), (w1, b1) = prev, last
    w = w1 + ratio * (w1 - w0)
    keep = ((w * w1).sum(dim=0, keepdim=True) > 0) if group else (w * w1 > 0)
    return torch.where(keep, w, torch.zeros_like(w)), b1 + ratio * (b1 - b0)


def _prior_bias(prob: _Problem) -> Tensor:
    """The optimal bias at W = 0: log class frequencies."""
    return torch.log(prob.onehot_t.mean(dim=1).clamp_min(1e-12))


def _prepare(features: Tensor, labels: Tensor, alpha: float, num_classes: int | None,
             device: str | torch.device | None) -> tuple[_Problem, int]:
    features = _check_features(features)
    labels, n_classes = _check_labels(labels, features.shape[0], num_classes)
    _check_alpha(alpha)
    _check_variance(features)
    return _make_problem(features, labels, n_classes, resolve_device(device)), n_classes


def fit_elastic_net(features: Tensor, labels: Tensor, lam: float, *, alpha: float = 0.99,
                    group: bool = False, init: ElasticNetFit | None = None, num_classes: int | None = None,
                    tol: float = 1e-5, max_iter: int = 5000,
                    device: str | torch.device | None = None) -> ElasticNetFit:
    """Solve the elastic-net problem at one λ (``lam``) and α (``alpha``), warm-started from ``init``.

    The solve stops once the certified relative duality gap (P − D)/P, reported as ``fit.gap``, is
    ≤ ``tol``; then P − P* ≤ gap·P.
    """
    if not float(lam) > 0:
        raise ValueError(f"lam (λ) must be > 0, got {lam}: at λ = 0 no duality gap certifies a solution "
                         "(and separable classes have no minimiser); use a small positive λ.")
    prob, n_classes = _prepare(features, labels, alpha, num_classes, device)
    d = prob.x.shape[1]
    if init is None:
        weight = torch.zeros(n_classes, d, dtype=prob.x.dtype, device=prob.x.device)
        bias = _prior_bias(prob)
    else:
        weight, bias = init.weight.to(prob.x), init.bias.to(prob.x)
    p, loss = _point(prob, weight, bias)
    lam = float(lam)
    weight, bias, p, loss, n_iter, converged, gap = _solve(prob, weight, bias, p, loss, lam, lam, alpha,
                                                           group, tol, max_iter)
    obj = loss + float(_penalty(weight.double(), lam, alpha, group))
    return ElasticNetFit(weight.cpu(), bias.cpu(), lam, alpha, group, obj, n_iter, converged, gap)


def lambda_grid(top: float, n_lambdas: int, epsilon: float) -> Tensor:
    """The path's λ: ``n_lambdas`` log-spaced values from ``top`` (λ_max) down to ε·top (float64)."""
    return torch.logspace(math.log10(top), math.log10(epsilon * top), n_lambdas, dtype=torch.float64)


def elastic_net_path(features: Tensor, labels: Tensor, *, alpha: float = 0.99, n_lambdas: int = 100,
                     epsilon: float = 1e-3, lambdas: Tensor | None = None, group: bool = False,
                     tol: float = 1e-4, max_iter: int = 2000, max_features: int | None = None,
                     val: tuple[Tensor, Tensor] | None = None, num_classes: int | None = None,
                     device: str | torch.device | None = None, progress: bool = True) -> ElasticNetPath:
    """The regularisation path from λ_max down to ε·λ_max (``n_lambdas`` log-spaced values, glm-saga's).

    Each λ is solved until its certified relative duality gap (P − D)/P is ≤ ``tol`` (``path.gaps``
    holds it for every entry, and P − P* ≤ gap·P); ``path.converged`` says where that held within
    ``max_iter`` iterations. ``max_features``
    stops the path early once more input features than that are in use (glmnet's ``dfmax``);
    ``val=(features, labels)`` adds the validation accuracy of every entry.
    """
    start = time.perf_counter()
    prob, n_classes = _prepare(features, labels, alpha, num_classes, device)
    if lambdas is None:
        if n_lambdas < 1 or not 0 < epsilon <= 1:
            raise ValueError(f"need n_lambdas ≥ 1 and 0 < epsilon ≤ 1, got {n_lambdas} and {epsilon}.")
        top = lambda_max(prob.x, prob.labels, alpha, group, n_classes)
        lambdas = lambda_grid(top, n_lambdas, epsilon)
    lambdas = torch.as_tensor(lambdas, dtype=torch.float64).flatten()
    if not (lambdas > 0).all() or (lambdas[1:] > lambdas[:-1]).any():
        raise ValueError("lambdas must be positive and non-increasing (the path runs from λ_max down; at "
                         "λ = 0 no duality gap certifies a solution).")
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            what = f"a {type(val).__name__} of length {len(val)}" if isinstance(val, (tuple, list)) \
                else type(val).__name__
            raise TypeError(f"val must be a pair (features, labels) of validation tensors, got {what}.")
        xv = _check_features(val[0], "val features").to(prob.x)
        if xv.shape[1] != prob.x.shape[1]:
            raise ValueError(f"val features have {xv.shape[1]} columns but the training features "
                             f"have {prob.x.shape[1]}; give the validation set the same features "
                             "(the same extractor and columns) as the training set.")
        yv, _ = _check_labels(val[1], xv.shape[0], n_classes)
        yv = yv.to(prob.x.device)
    weight = torch.zeros(n_classes, prob.x.shape[1], dtype=prob.x.dtype, device=prob.x.device)
    bias = _prior_bias(prob)
    out: dict[str, list] = {k: [] for k in ("w", "b", "obj", "acc", "val", "iter", "ok", "gap")}
    p, loss = _point(prob, weight, bias)
    older: tuple[float, Tensor, Tensor] | None = None  # the solution before the last one (λ, W, b)
    lam_prev = float(lambdas[0])
    bar = tqdm(total=len(lambdas), desc="elastic-net path", disable=not progress, leave=False)
    for lam in lambdas.tolist():
        last = (lam_prev, weight, bias)
        guess = None if older is None else _predict((older[0], lam_prev, lam), older[1:], last[1:], group)
        if guess is not None:  # start from the predictor where it is lower than the warm start
            p_g, loss_g = _point(prob, *guess)
            if loss_g + float(_penalty(guess[0].double(), lam, alpha, group)) < \
                    loss + float(_penalty(weight.double(), lam, alpha, group)):
                (weight, bias), p, loss = guess, p_g, loss_g
        weight, bias, p, loss, n_iter, converged, gap = _solve(prob, weight, bias, p, loss, lam, lam_prev,
                                                               alpha, group, tol, max_iter)
        older = last
        out["ok"].append(converged)
        out["gap"].append(gap)
        lam_prev = lam
        out["w"].append(weight.cpu())
        out["b"].append(bias.cpu())
        out["obj"].append(loss + float(_penalty(weight.double(), lam, alpha, group)))
        out["acc"].append(float((p.argmax(dim=0) == prob.labels).double().mean()))
        out["iter"].append(n_iter)
        if val is not None:
            out["val"].append(float(((xv @ weight.T + bias).argmax(dim=1) == yv).double().mean()))
        used = int((weight != 0).any(dim=0).sum())
        bar.set_postfix(features=used, acc=f"{out['acc'][-1]:.3f}")
        bar.update(1)
        if max_features is not None and used > max_features:
            bar.total = bar.n  # stopping early at max_features is the goal, not a failure
            break
    bar.close()
    k = len(out["w"])
    return ElasticNetPath(
        lambdas=lambdas[:k].clone(), weights=torch.stack(out["w"]), biases=torch.stack(out["b"]),
        objectives=torch.tensor(out["obj"], dtype=torch.float64),
        train_accuracy=torch.tensor(out["acc"], dtype=torch.float64),
        val_accuracy=torch.tensor(out["val"], dtype=torch.float64) if val is not None else None,
        n_iter=torch.tensor(out["iter"]), converged=torch.tensor(out["ok"]), alpha=float(alpha),
        group=bool(group),
        seconds=time.perf_counter() - start, gaps=torch.tensor(out["gap"], dtype=torch.float64))
