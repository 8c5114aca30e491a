"""Elastic-net regularisation path of multinomial logistic regression (glm-saga's problem).

For every λ on a path from λ_max down to ε·λ_max we solve (Wong et al., 2021, eq. 1)

    min_{W,b}  (1/N) Σ_i CE(W x_i + b, y_i) + λ (α ‖W‖₁ + (1−α)/2 ‖W‖_F²)

with ``group=True`` replacing ‖W‖₁ by the group lasso Σ_j ‖W_{:,j}‖₂ over input features (the
columns of W). The bias is not penalised. The features are expected to be standardised
(``standardize``); then ``lambda_max`` is the smallest λ whose solution is W = 0.

Solver: accelerated proximal gradient (FISTA) on the full batch, vectorised in torch, with
backtracking line search, adaptive restart (O'Donoghue & Candès, 2015), warm starts along the path
and sequential strong-rule screening with a KKT check (Tibshirani et al., 2012), so the inner
iterations only touch the feature columns that can be active. A solve stops when the proximal
gradient mapping ‖(W − prox(W − s∇f))/s‖_∞, the optimality residual of the problem, is ≤ ``tol``.

Public API
----------
``standardize(features, mean=None, std=None) -> (z, mean, std)``
``lambda_max(features, labels, alpha, group=False) -> float``
``elastic_net_objective(features, labels, weight, bias, lam, alpha, group=False) -> float``
``fit_elastic_net(features, labels, lam, *, alpha, group, init, tol, max_iter, device) -> ElasticNetFit``
``elastic_net_path(features, labels, *, alpha, n_lambdas, epsilon, lambdas, group, tol, max_iter,
max_features, val, device, progress) -> ElasticNetPath``
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..runtime import resolve_device

__all__ = [
    "ElasticNetFit",
    "ElasticNetPath",
    "elastic_net_objective",
    "elastic_net_path",
    "fit_elastic_net",
    "lambda_max",
    "standardize",
]


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


@dataclass(frozen=True)
class ElasticNetPath:
    """Solutions along a λ path: ``weights[i]``, ``biases[i]`` solve the problem at ``lambdas[i]``."""

    lambdas: Tensor  # (K,)
    weights: Tensor  # (K, n_classes, n_features)
    biases: Tensor  # (K, n_classes)
    objectives: Tensor  # (K,)
    train_accuracy: Tensor  # (K,)
    val_accuracy: Tensor | None  # (K,) when validation data was given
    n_iter: Tensor  # (K,) proximal-gradient iterations per λ
    converged: Tensor  # (K,) bool: the optimality residual reached tol within max_iter
    alpha: float
    group: bool
    seconds: float

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
                             int(self.n_iter[index]), bool(self.converged[index]))


# ----------------------------------------------------------------------------- input checks


def _check_features(features: Tensor, name: str = "features") -> Tensor:
    if not isinstance(features, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, d), got {type(features).__name__}.")
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, d) with N, d > 0, got {tuple(features.shape)}.")
    if not features.is_floating_point():
        features = features.float()
    bad = ~torch.isfinite(features)
    if bad.any():
        cols = torch.nonzero(bad.any(dim=0)).flatten()[:5].tolist()
        raise ValueError(f"{name} contain NaN or infinite values (in feature columns {cols}…); "
                         "remove or impute them before fitting.")
    return features


def _check_labels(labels: Tensor, n: int, num_classes: int | None) -> tuple[Tensor, int]:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor of class indices, got {type(labels).__name__}.")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match the features, got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}.")
    labels = labels.long()
    high = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if int(labels.min()) < 0 or int(labels.max()) >= high:
        raise ValueError(f"labels must lie in [0, {high}) (num_classes={high}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}].")
    if high < 2:
        raise ValueError("labels hold a single class; a classifier needs at least two.")
    return labels, high


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha (α) mixes L1 and L2 and must lie in [0, 1], got {alpha}.")
    return float(alpha)


def constant_columns(features: Tensor) -> Tensor:
    """Boolean mask (d,) of the columns that do not vary (population std ≈ 0; NaN counts as varying)."""
    mean, std = features.mean(dim=0), features.std(dim=0, unbiased=False)
    return std <= 1e-12 * (1 + mean.abs())


def _check_variance(features: Tensor) -> tuple[Tensor, Tensor]:
    """Column means and (population) standard deviations; a constant column is an error."""
    mean, std = features.mean(dim=0), features.std(dim=0, unbiased=False)
    flat = torch.nonzero(constant_columns(features)).flatten()
    if len(flat):
        raise ValueError(f"{len(flat)} feature(s) have zero variance (columns {flat[:5].tolist()}…): "
                         "they carry no information; drop them (e.g. features[:, std > 0]) first.")
    return mean, std


def standardize(features: Tensor, mean: Tensor | None = None,
                std: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``((features − μ)/σ, μ, σ)``; μ, σ are computed when not given (population std)."""
    features = _check_features(features)
    if mean is None or std is None:
        mean, std = _check_variance(features)
    return (features - mean) / std, mean, std


def _penalty(weight: Tensor, lam: float, alpha: float, group: bool) -> Tensor:
    sparse = weight.norm(dim=0).sum() if group else weight.abs().sum()
    return lam * (alpha * sparse + 0.5 * (1 - alpha) * weight.pow(2).sum())


def lambda_max(features: Tensor, labels: Tensor, alpha: float, group: bool = False,
               num_classes: int | None = None) -> float:
    """λ_max = max_{j,c} |Σ_i x_ij (Y_ic − Ȳ_c)| / (N·max(α, 10⁻³)); group: max_j of the L2 norm over c."""
    features = _check_features(features)
    labels, n_classes = _check_labels(labels, features.shape[0], num_classes)
    onehot = F.one_hot(labels, n_classes).to(features.dtype)
    inner = (onehot - onehot.mean(dim=0)).T @ features  # (C, d)
    top = inner.norm(dim=0).max() if group else inner.abs().max()
    return float(top) / features.shape[0] / max(_check_alpha(alpha), 1e-3)


def elastic_net_objective(features: Tensor, labels: Tensor, weight: Tensor, bias: Tensor, lam: float,
                          alpha: float, group: bool = False) -> float:
    """The objective (1/N) Σ CE(W x_i + b, y_i) + λ(α‖W‖₁ + (1−α)/2‖W‖²) (group: Σ_j ‖W_:,j‖₂)."""
    features = _check_features(features)
    labels, _ = _check_labels(labels, features.shape[0], weight.shape[0])
    logits = features @ weight.to(features).T + bias.to(features)
    return float(F.cross_entropy(logits, labels) + _penalty(weight.to(features), lam, alpha, group))


# ----------------------------------------------------------------------------- the inner solver


def _prox(weight: Tensor, step: float, lam: float, alpha: float, group: bool) -> Tensor:
    """prox of s·λ(α‖·‖₁ + (1−α)/2‖·‖²): (group) soft-threshold, then shrink by 1/(1 + sλ(1−α))."""
    thresh = step * lam * alpha
    if group:
        norm = weight.norm(dim=0, keepdim=True)
        out = weight * torch.clamp(1 - thresh / norm.clamp_min(1e-30), min=0)
    else:
        out = torch.sign(weight) * torch.clamp(weight.abs() - thresh, min=0)
    return out / (1 + step * lam * (1 - alpha))


def _softmax_ce(logits_t: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and softmax of class-major logits (C, N), with a single exp.

    Class-major layout keeps the reductions over classes contiguous, which is several times
    faster on CPU than ``log_softmax`` over a short last dimension.
    """
    shifted = logits_t - logits_t.amax(dim=0, keepdim=True)
    expo = shifted.exp()
    total = expo.sum(dim=0, keepdim=True)
    loss = (total.log().squeeze(0) - shifted.gather(0, labels[None]).squeeze(0)).mean()
    return loss, expo / total


def _logits_t(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return torch.addmm(bias[:, None], weight, x.T)


@dataclass
class _Problem:
    """Features on the device, labels, class-major one-hot targets and a curvature bound."""

    x: Tensor
    labels: Tensor
    onehot_t: Tensor
    lipschitz: float


def _make_problem(features: Tensor, labels: Tensor, n_classes: int, device: torch.device) -> _Problem:
    x = features.to(device)
    labels = labels.to(device)
    onehot_t = F.one_hot(labels, n_classes).to(x.dtype).T.contiguous()
    # The softmax-CE Hessian w.r.t. the logits is ≤ 1/2 I, so L ≤ ‖[X, 1]‖₂² / (2N).
    return _Problem(x, labels, onehot_t, _squared_norm_bound(x) / (2 * x.shape[0]))


def _squared_norm_bound(x: Tensor, n_iter: int = 100) -> float:
    """An upper estimate of ‖[X, 1]‖₂² by power iteration (5 % margin; the line search checks anyway)."""
    gen = torch.Generator(device=x.device).manual_seed(0)
    v = torch.randn(x.shape[1] + 1, dtype=x.dtype, device=x.device, generator=gen)
    est = 0.0
    for _ in range(n_iter):
        u = x @ v[:-1] + v[-1]
        v = torch.cat([x.T @ u, u.sum()[None]])
        new = float(v.norm())
        v = v / new
        if abs(new - est) <= 1e-4 * new:
            break
        est = new
    return 1.05 * new


def _fista(x: Tensor, labels: Tensor, onehot_t: Tensor, weight: Tensor, bias: Tensor, lam: float,
           alpha: float, group: bool, step: float, safe_step: float, tol: float,
           max_iter: int) -> tuple[Tensor, Tensor, int, bool, float]:
    """FISTA with backtracking and adaptive restart on the columns in ``x``; returns the last step too.

    ``safe_step`` ≈ 1/L should satisfy the sufficient-decrease test; longer steps are tried first
    and halved until the test passes (or the step is far below 1/L, where only rounding can fail it).
    Logits are linear in (W, b), so the extrapolated point's logits are combined, not recomputed.
    """
    n = x.shape[0]
    slack = 16 * torch.finfo(x.dtype).eps  # rounding noise of the loss, not a real increase
    w_old, b_old = weight, bias
    z_old = _logits_t(x, weight, bias)
    w_y, b_y, z_y = weight, bias, z_old
    momentum, converged, it = 1.0, False, 0
    for it in range(1, max_iter + 1):
        f_y, prob = _softmax_ce(z_y, labels)
        resid = (prob - onehot_t) / n
        grad_w, grad_b = resid @ x, resid.sum(dim=1)
        step = min(step * 1.25, 64 * safe_step)  # try a longer step, the line search shortens it
        while True:
            w_new = _prox(w_y - step * grad_w, step, lam, alpha, group)
            b_new = b_y - step * grad_b
            z_new = _logits_t(x, w_new, b_new)
            dw, db = w_new - w_y, b_new - b_y
            quad = f_y + (grad_w * dw).sum() + (grad_b * db).sum() + (dw.pow(2).sum() + db.pow(2).sum()) / (2 * step)
            if _softmax_ce(z_new, labels)[0] <= quad + slack * abs(float(f_y)) or step <= safe_step / 8:
                break
            step *= 0.5
        residual = max(float(dw.abs().max()) if dw.numel() else 0.0, float(db.abs().max())) / step
        if residual <= tol:
            w_old, b_old, converged = w_new, b_new, True
            break
        # Gradient-based adaptive restart: drop the momentum when it points uphill.
        if (dw * (w_new - w_old)).sum() + (db * (b_new - b_old)).sum() > 0:
            momentum = 1.0
        nxt = (1 + math.sqrt(1 + 4 * momentum ** 2)) / 2
        beta = (momentum - 1) / nxt
        w_y = w_new + beta * (w_new - w_old)
        b_y = b_new + beta * (b_new - b_old)
        z_y = z_new + beta * (z_new - z_old)
        w_old, b_old, z_old, momentum = w_new, b_new, z_new, nxt
    return w_old, b_old, it, converged, step


def _full_gradient(prob: _Problem, weight: Tensor, bias: Tensor) -> Tensor:
    _, p = _softmax_ce(_logits_t(prob.x, weight, bias), prob.labels)
    return (p - prob.onehot_t) @ prob.x / prob.x.shape[0]


def _loss(prob: _Problem, weight: Tensor, bias: Tensor) -> Tensor:
    return _softmax_ce(_logits_t(prob.x, weight, bias), prob.labels)[0]


def _screen(grad: Tensor, weight: Tensor, threshold: float, group: bool) -> Tensor:
    """Columns that may be non-zero: current non-zeros plus those whose gradient passes ``threshold``."""
    score = grad.norm(dim=0) if group else grad.abs().amax(dim=0)
    return (score >= threshold) | (weight != 0).any(dim=0)


def _solve(prob: _Problem, weight: Tensor, bias: Tensor, lam: float, lam_prev: float, alpha: float,
           group: bool, tol: float, max_iter: int) -> tuple[Tensor, Tensor, int, bool]:
    """Solve at λ from a warm start with strong-rule screening and a KKT check on the rest."""
    grad = _full_gradient(prob, weight, bias)
    active = _screen(grad, weight, alpha * (2 * lam - lam_prev), group)
    step, total = 1.0 / prob.lipschitz, 0
    while True:
        idx = torch.nonzero(active).flatten()
        w_act, bias, n_iter, converged, step = _fista(
            prob.x[:, idx], prob.labels, prob.onehot_t, weight[:, idx], bias, lam, alpha, group,
            step, 1.0 / prob.lipschitz, tol, max_iter - total)
        total += n_iter
        weight = torch.zeros_like(weight)
        weight[:, idx] = w_act
        grad = _full_gradient(prob, weight, bias)
        score = grad.norm(dim=0) if group else grad.abs().amax(dim=0)
        violators = (~active) & (score > alpha * lam + tol)
        if not violators.any() or total >= max_iter:
            return weight, bias, total, converged and not violators.any()
        active |= violators


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
    """Solve the elastic-net problem at one λ (``lam``) and α (``alpha``), warm-started from ``init``."""
    if not float(lam) >= 0:
        raise ValueError(f"lam (λ) must be ≥ 0, got {lam}.")
    prob, n_classes = _prepare(features, labels, alpha, num_classes, device)
    d = prob.x.shape[1]
    if init is None:
        weight = torch.zeros(n_classes, d, dtype=prob.x.dtype, device=prob.x.device)
        bias = _prior_bias(prob)
    else:
        weight, bias = init.weight.to(prob.x), init.bias.to(prob.x)
    weight, bias, n_iter, converged = _solve(prob, weight, bias, float(lam), float(lam), alpha, group,
                                             tol, max_iter)
    obj = float(_loss(prob, weight, bias) + _penalty(weight, float(lam), alpha, group))
    return ElasticNetFit(weight.cpu(), bias.cpu(), float(lam), alpha, group, obj, n_iter, converged)


def elastic_net_path(features: Tensor, labels: Tensor, *, alpha: float = 0.99, n_lambdas: int = 100,
                     epsilon: float = 1e-3, lambdas: Tensor | None = None, group: bool = False,
                     tol: float = 1e-4, max_iter: int = 2000, max_features: int | None = None,
                     val: tuple[Tensor, Tensor] | None = None, num_classes: int | None = None,
                     device: str | torch.device | None = None, progress: bool = True) -> ElasticNetPath:
    """The regularisation path from λ_max down to ε·λ_max (``n_lambdas`` log-spaced values, glm-saga's).

    ``max_features`` stops the path early once more input features than that are in use (glmnet's
    ``dfmax``); ``val=(features, labels)`` adds the validation accuracy of every entry.
    """
    start = time.perf_counter()
    prob, n_classes = _prepare(features, labels, alpha, num_classes, device)
    if lambdas is None:
        if n_lambdas < 1 or not 0 < epsilon <= 1:
            raise ValueError(f"need n_lambdas ≥ 1 and 0 < epsilon ≤ 1, got {n_lambdas} and {epsilon}.")
        top = lambda_max(prob.x, prob.labels, alpha, group, n_classes)
        lambdas = torch.logspace(math.log10(top), math.log10(epsilon * top), n_lambdas, dtype=torch.float64)
    lambdas = torch.as_tensor(lambdas, dtype=torch.float64).flatten()
    if (lambdas < 0).any() or (lambdas[1:] > lambdas[:-1]).any():
        raise ValueError("lambdas must be non-negative and non-increasing (the path runs from λ_max down).")
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
    out: dict[str, list] = {k: [] for k in ("w", "b", "obj", "acc", "val", "iter", "ok")}
    lam_prev = float(lambdas[0])
    bar = tqdm(total=len(lambdas), desc="elastic-net path", disable=not progress, leave=False)
    for lam in lambdas.tolist():
        weight, bias, n_iter, converged = _solve(prob, weight, bias, lam, lam_prev, alpha, group, tol,
                                                 max_iter)
        out["ok"].append(converged)
        lam_prev = lam
        logits_t = _logits_t(prob.x, weight, bias)
        out["w"].append(weight.cpu())
        out["b"].append(bias.cpu())
        out["obj"].append(float(_softmax_ce(logits_t, prob.labels)[0] + _penalty(weight, lam, alpha, group)))
        out["acc"].append(float((logits_t.argmax(dim=0) == prob.labels).double().mean()))
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
        n_iter=torch.tensor(out["iter"]), converged=torch.tensor(out["ok"]), alpha=float(alpha), group=bool(group),
        seconds=time.perf_counter() - start)
