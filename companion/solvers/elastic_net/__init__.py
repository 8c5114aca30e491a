"""Elastic-net regularisation path of multinomial logistic regression (glm-saga's problem).

For every λ on a path from λ_max down to ε·λ_max we solve (Wong et al., 2021, eq. 1)

    min_{W,b}  (1/N) Σ_i CE(W x_i + b, y_i) + λ (α ‖W‖₁ + (1−α)/2 ‖W‖_F²)

with ``group=True`` replacing ‖W‖₁ by the group lasso Σ_j ‖W_{:,j}‖₂ over input features (the
columns of W). The bias is not penalised. The features are expected to be standardised
(``standardize``); then ``lambda_max`` is the smallest λ whose solution is W = 0.

Solver: warm starts along the path and sequential strong-rule screening with a KKT check
(Tibshirani et al., 2012), so the inner solver only touches the feature columns that can be active.
Each λ after the second starts from the better (lower objective at the new λ) of the last solution
and a predictor step, the last two solutions extrapolated linearly in log λ with weights that
would change sign set to zero; it saves Newton iterations and leaves the certified answer as is.
On up to ``newton.GRAM_MAX`` screened columns the inner solver takes Newton steps (``newton``):
a proximal quasi-Newton step on a per-class quadratic model (coordinate descent on the weighted
Gram matrices, glmnet's inner loop) whenever a zero weight violates its optimality condition, and
a Newton–CG step on the support preconditioned by the Cholesky factors of those Grams. On more
columns, and where a Newton step finds no decrease (e.g. α = 1, where the Hessian is singular along
W + 1vᵀ), it falls back to proximal gradient with backtracking and Anderson acceleration (Bertrand
& Massias, 2021).

Stopping rule: a solve stops when the certified relative duality gap (P(W, b) − D(G)) / P(W, b) is
≤ ``tol``, which bounds the relative sub-optimality of the returned point (see ``_dual``). The dual
point is the softmax residual at the current point (the proximal gradient also tries its
extrapolation from the last few residuals; Massias et al., 2020). The gap is reported per λ
(``ElasticNetFit.gap``, ``ElasticNetPath.gaps``), computed in float64 at the returned point.

The dual (Fenchel–Rockafellar; the bias is unpenalised, so the dual variable has zero class sums):
    P(W, b) = (1/N) Σ_i CE(W x_i + b, y_i) + R(W) ≥ D(G) = −(1/N) Σ_ic q_ic log q_ic − R*(−Gᵀ X),
    with G = (Q − Y)/N, rows q_i of Q in the probability simplex and Σ_i q_i = Σ_i y_i, and
    R*(V) = Σ (|V| − λα)₊² / (2λ(1−α)) (group: Σ_j (‖V_:,j‖₂ − λα)₊² / (2λ(1−α)); α = 1: 0 if ‖V‖_∞ ≤ λ).
G is built from the softmax residual at the current point, shifted to zero class sums and scaled
towards Y (q = (1−κ) y + κ q keeps Q feasible) so that R* stays finite and small.
The group variant has the same dual with the group-lasso conjugate, so it is certified the same way.
At α = 1 the scaling κ makes the gap first-order in the optimality residual (at α < 1 it is
second-order but amplified by 1/(λ(1−α))), so at small λ the certificate needs KKT residuals near
1e-7, which Newton steps reach in a few iterations and first-order steps only slowly. At λ = 0 R* is
the indicator of {0} and no gap is finite, so λ must be positive.

Public API
----------
``standardize(features, mean=None, std=None) -> (z, mean, std)``
``lambda_max(features, labels, alpha, group=False) -> float``
``lambda_grid(top, n_lambdas, epsilon) -> Tensor`` (the path's log-spaced λ)
``elastic_net_objective(features, labels, weight, bias, lam, alpha, group=False) -> float``
``fit_elastic_net(features, labels, lam, *, alpha, group, init, tol, max_iter, device)
-> ElasticNetFit``
``elastic_net_path(features, labels, *, alpha, n_lambdas, epsilon, lambdas, group, tol, max_iter,
max_features, val, device, progress) -> ElasticNetPath``
"""

from .problem import constant_columns, elastic_net_objective, lambda_max, standardize
from .solve import ElasticNetFit, ElasticNetPath, elastic_net_path, fit_elastic_net, lambda_grid

__all__ = [
    "ElasticNetFit",
    "ElasticNetPath",
    "constant_columns",
    "elastic_net_objective",
    "elastic_net_path",
    "fit_elastic_net",
    "lambda_grid",
    "lambda_max",
    "standardize",
]
