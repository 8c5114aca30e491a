"""Elastic-net regularisation path of multinomial logistic regression (glm-saga's problem).

For every λ on a path from λ_max down to ε·λ_max we solve (Wong et al., 2021, eq. 1)

    min_{W,b}  (1/N) Σ_i CE(W x_i + b, y_i) + λ (α ‖W‖₁ + (1−α)/2 ‖W‖_F²)

with ``group=True`` replacing ‖W‖₁ by the group lasso Σ_j ‖W_{:,j}‖₂ over input features (the
columns of W). The bias is not penalised. The features are expected to be standardised
(``standardize``); then ``lambda_max`` is the smallest λ whose solution is W = 0.

Solver: proximal gradient on the full batch, vectorised in torch, with backtracking line search and
Anderson acceleration (every few iterations the extrapolation of the last iterates replaces the
current point when it lowers the objective; Bertrand & Massias, 2021), warm starts along the path
and sequential strong-rule screening with a KKT check (Tibshirani et al., 2012), so the inner
iterations only touch the feature columns that can be active.

Stopping rules. ``stop="gap"``: a solve stops when a certified relative duality gap
(P(W, b) − D(G)) / P(W, b) is ≤ ``tol``, which bounds the relative sub-optimality of the returned point
(see ``_dual``). The dual point is the better of the current softmax residual and its extrapolation
from the last few residuals (dual extrapolation, Massias et al., 2020), which certifies the same
point in fewer iterations. The gap is reported per λ (``ElasticNetFit.gap``, ``ElasticNetPath.gaps``).
``stop="residual"`` (the default): stop when the proximal gradient mapping ‖(W − prox(W − s∇f))/s‖_∞
is ≤ ``tol``; a step size, not an accuracy (at 0.01·λ_max it ends up to ~3e-4 above the optimum),
but much faster at small λ over many classes, where certifying 1e-4 needs KKT residuals near 1e-7;
the returned fit still reports its certified gap.

The dual (Fenchel–Rockafellar; the bias is unpenalised, so the dual variable has zero class sums):
    P(W, b) = (1/N) Σ_i CE(W x_i + b, y_i) + R(W) ≥ D(G) = −(1/N) Σ_ic q_ic log q_ic − R*(−Gᵀ X),
    with G = (Q − Y)/N, rows q_i of Q in the probability simplex and Σ_i q_i = Σ_i y_i, and
    R*(V) = Σ (|V| − λα)₊² / (2λ(1−α)) (group: Σ_j (‖V_:,j‖₂ − λα)₊² / (2λ(1−α)); α = 1: 0 if ‖V‖_∞ ≤ λ).
G is built from the softmax residual at the current point, shifted to zero class sums and scaled
towards Y (q = (1−κ) y + κ q keeps Q feasible) so that R* stays finite and small.
The group variant has the same dual with the group-lasso conjugate, so it is certified the same way.
At α = 1 the scaling κ makes the gap first-order in the optimality residual (at α < 1 it is
second-order but amplified by 1/(λ(1−α))); at λ = 0 R* is the indicator of {0} and the gap stays
infinite: use ``stop="residual"`` there. Cost: near λ/λ_max = 10⁻³ the first-order solver needs many
iterations to certify 10⁻⁴ (``tests/benchmarks/bench_elastic_net.py``), which the residual rule never
paid for (it stopped up to ~10⁻² above the optimum).

Public API
----------
``standardize(features, mean=None, std=None) -> (z, mean, std)``
``lambda_max(features, labels, alpha, group=False) -> float``
``elastic_net_objective(features, labels, weight, bias, lam, alpha, group=False) -> float``
``fit_elastic_net(features, labels, lam, *, alpha, group, init, tol, max_iter, device, stop)
-> ElasticNetFit``
``elastic_net_path(features, labels, *, alpha, n_lambdas, epsilon, lambdas, group, tol, max_iter,
max_features, val, device, progress, stop) -> ElasticNetPath``
"""

from .problem import constant_columns, elastic_net_objective, lambda_max, standardize
from .solve import ElasticNetFit, ElasticNetPath, elastic_net_path, fit_elastic_net

__all__ = [
    "ElasticNetFit",
    "ElasticNetPath",
    "constant_columns",
    "elastic_net_objective",
    "elastic_net_path",
    "fit_elastic_net",
    "lambda_max",
    "standardize",
]
