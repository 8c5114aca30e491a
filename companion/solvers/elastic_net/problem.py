"""The elastic-net problem: input checks, standardisation, λ_max, the objective and its pieces."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

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
    """Features on the device, labels, class-major one-hot targets, a curvature bound, dual data."""

    x: Tensor
    labels: Tensor
    onehot_t: Tensor
    lipschitz: float
    counts: Tensor  # (C,) float64 class counts n_c
    col_mean: Tensor  # (d,) float64 column means of X (≈ 0 for standardised features)
    class_mean: Tensor  # (C, d) float64 Yᵀ X / N
    pairs: dict = field(default_factory=dict)  # pairwise column products per screened set (newton)


def _make_problem(features: Tensor, labels: Tensor, n_classes: int, device: torch.device) -> _Problem:
    x = features.to(device)
    labels = labels.to(device)
    onehot_t = F.one_hot(labels, n_classes).to(x.dtype).T.contiguous()
    n = x.shape[0]
    # The softmax-CE Hessian w.r.t. the logits is ≤ 1/2 I, so L ≤ ‖[X, 1]‖₂² / (2N).
    return _Problem(x, labels, onehot_t, _squared_norm_bound(x) / (2 * n),
                    onehot_t.double().sum(dim=1), x.double().mean(dim=0),
                    (onehot_t @ x).double() / n)


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
