"""Elastic-net regularisation path of multinomial logistic regression (glm-saga's problem).

For every λ on a path from λ_max down to ε·λ_max we solve (Wong et al., 2021, eq. 1)

    min_{W,b}  (1/N) Σ_i CE(W x_i + b, y_i) + λ (α ‖W‖₁ + (1−α)/2 ‖W‖_F²)

with ``group=True`` replacing ‖W‖₁ by the group lasso Σ_j ‖W_{:,j}‖₂ over input features (the
columns of W). The bias is not penalised. The features are expected to be standardised
(``standardize``); then ``lambda_max`` is the smallest λ whose solution is W = 0.

Solver: proximal gradient on the full batch, vectorised in torch, with backtracking line search,
interleaved with proximal Newton steps on the support (``newton``: on the non-zero weights the
penalty is smooth, and the Newton system of the multinomial loss is solved by conjugate gradients
with Hessian-vector products, then a line search; Lee, Sun & Saunders, 2014), warm starts along the
path and sequential strong-rule screening with a KKT check (Tibshirani et al., 2012), so the inner
iterations only touch the feature columns that can be active. The gradient steps find the support
(entries enter only through them); the Newton steps converge fast once it is found, which is what
first-order steps alone could not do at small λ over many classes.

Stopping rule: a solve stops when the certified relative duality gap (P(W, b) − D(G)) / P(W, b) is
≤ ``tol``, which bounds the relative sub-optimality of the returned point (see ``_dual``); it is
checked after every Newton step, with the softmax residual there as the dual point, and reported
per λ (``ElasticNetFit.gap``, ``ElasticNetPath.gaps``).

The dual (Fenchel–Rockafellar; the bias is unpenalised, so the dual variable has zero class sums):
    P(W, b) = (1/N) Σ_i CE(W x_i + b, y_i) + R(W) ≥ D(G) = −(1/N) Σ_ic q_ic log q_ic − R*(−Gᵀ X),
    with G = (Q − Y)/N, rows q_i of Q in the probability simplex and Σ_i q_i = Σ_i y_i, and
    R*(V) = Σ (|V| − λα)₊² / (2λ(1−α)) (group: Σ_j (‖V_:,j‖₂ − λα)₊² / (2λ(1−α)); α = 1: 0 if ‖V‖_∞ ≤ λ).
G is built from the softmax residual at the current point, shifted to zero class sums and scaled
towards Y (q = (1−κ) y + κ q keeps Q feasible) so that R* stays finite and small.
The group variant has the same dual with the group-lasso conjugate, so it is certified the same way.
At α = 1 the scaling κ makes the gap first-order in the optimality residual (at α < 1 it is
second-order but amplified by 1/(λ(1−α))), so at small λ the certificate needs KKT residuals near
1e-7: the Newton steps reach them in a few steps. At λ = 0 R* is the indicator of {0} and no gap is
finite, so λ must be positive.

Public API
----------
``standardize(features, mean=None, std=None) -> (z, mean, std)``
``lambda_max(features, labels, alpha, group=False) -> float``
``elastic_net_objective(features, labels, weight, bias, lam, alpha, group=False) -> float``
``fit_elastic_net(features, labels, lam, *, alpha, group, init, tol, max_iter, device)
-> ElasticNetFit``
``elastic_net_path(features, labels, *, alpha, n_lambdas, epsilon, lambdas, group, tol, max_iter,
max_features, val, device, progress) -> ElasticNetPath``
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
