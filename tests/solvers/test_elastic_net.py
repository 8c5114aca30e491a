"""Elastic-net path: scikit-learn reference, KKT and duality-gap certificates, λ_max, bad input."""

import math
import warnings

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

from companion.solvers.elastic_net import (
    elastic_net_objective,
    elastic_net_path,
    fit_elastic_net,
    lambda_max,
    standardize,
)


def make_data(n=240, d=8, c=3, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    x[:, : min(3, d)] += 0.9 * y[:, None].to(dtype)
    return standardize(x)[0], y


def kkt_residual(x, y, fit, bias=True):
    """Max violation of the optimality conditions of the elastic-net problem at ``fit`` (``bias``:
    with the unpenalised bias's gradient)."""
    w = fit.weight.detach().double().requires_grad_()
    b = fit.bias.detach().double().requires_grad_()
    loss = torch.nn.functional.cross_entropy(x.double() @ w.T + b, y)
    gw, gb = torch.autograd.grad(loss, (w, b))
    w = w.detach()
    smooth = gw + fit.lam * (1 - fit.alpha) * w  # gradient of the differentiable part
    l1 = fit.lam * fit.alpha
    if fit.group:
        norm = w.norm(dim=0)
        on = norm > 0
        viol_on = (smooth[:, on] + l1 * w[:, on] / norm[on]).abs().max() if on.any() else torch.tensor(0.0)
        viol_off = (smooth[:, ~on].norm(dim=0) - l1).clamp_min(0).max() if (~on).any() else torch.tensor(0.0)
    else:
        on = w != 0
        viol_on = (smooth[on] + l1 * w[on].sign()).abs().max() if on.any() else torch.tensor(0.0)
        viol_off = (smooth[~on].abs() - l1).clamp_min(0).max() if (~on).any() else torch.tensor(0.0)
    return max(float(viol_on), float(viol_off), float(gb.abs().max()) if bias else 0.0)


def bias_gradient(x, y, fit):
    logits = x.double() @ fit.weight.detach().double().T + fit.bias.detach().double()
    return float((torch.softmax(logits, dim=1) - torch.nn.functional.one_hot(y).double()).mean(0).abs().max())


@pytest.mark.parametrize("alpha,lam", [(0.5, 0.02), (0.99, 0.005), (1.0, 0.01)])
def test_matches_sklearn_saga_objective(alpha, lam):
    # Ours: (1/N) Σ CE + λ(α‖W‖₁ + (1−α)/2‖W‖²). scikit-learn's saga minimises
    # C Σ CE + l1_ratio‖W‖₁ + (1 − l1_ratio)/2‖W‖², which is N·λ·C times ours with
    # C = 1/(N·λ) and l1_ratio = α, so both have the same minimiser and we compare our objective
    # at both solutions. Tolerance: relative 1e-7 (sklearn run to tol 1e-10).
    x, y = make_data()
    n = x.shape[0]
    # the gap is first-order in the residual at α = 1 (second-order below), hence the two tolerances
    ours = fit_elastic_net(x, y, lam, alpha=alpha, tol=1e-9 if alpha == 1 else 1e-12, max_iter=20000,
                           device="cpu")
    clf = LogisticRegression(C=1 / (n * lam), l1_ratio=alpha, solver="saga", tol=1e-10, max_iter=200000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x.numpy(), y.numpy())
    ref = elastic_net_objective(x, y, torch.tensor(clf.coef_), torch.tensor(clf.intercept_), lam, alpha)
    assert ours.converged
    assert ours.objective == pytest.approx(ref, rel=1e-7)
    assert ours.objective <= ref + 1e-9
    assert torch.allclose(ours.weight, torch.tensor(clf.coef_), atol=1e-3)


def residual_bound(x, fit):
    """The largest KKT residual on the support that the certified gap allows.

    Near the solution P is smooth on the support, with an L-Lipschitz gradient: L = ‖X‖²/(2N)
    (the softmax Hessian is at most ½·I) + λ(1 − α), and for groups + λα/‖w_j‖ (the norm's
    curvature). A residual r there lets a step of −r/L lower P by ‖r‖²/(2L), so P − P* ≥ ‖r‖²/(2L)
    and ‖r‖ ≤ √(2L·gap·P). Factor 2: the step can leave the support's orthant; the gap is floored at
    1e-14, the rounding of a gap computed from P and D near 1 in float64.
    """
    lip = float(torch.linalg.matrix_norm(x.double(), ord=2)) ** 2 / (2 * x.shape[0])
    lip += fit.lam * (1 - fit.alpha)
    if fit.group and (norms := fit.weight.double().norm(dim=0)).any():
        lip += fit.lam * fit.alpha / float(norms[norms > 0].min())
    return 2 * math.sqrt(2 * lip * max(fit.gap, 1e-14) * fit.objective)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 10), c=st.integers(2, 5),
       alpha=st.sampled_from([0.3, 0.8, 0.99, 1.0]), frac=st.floats(0.02, 0.9),
       group=st.booleans())
@example(seed=2, d=2, c=4, alpha=0.3, frac=0.734375, group=True)
@example(seed=0, d=3, c=2, alpha=1.0, frac=0.8125, group=False)
def test_solution_satisfies_kkt(seed, d, c, alpha, frac, group):
    x, y = make_data(n=60, d=d, c=c, seed=seed)
    lam = frac * lambda_max(x, y, alpha, group=group)
    fit = fit_elastic_net(x, y, lam, alpha=alpha, group=group, tol=1e-9 if alpha == 1 else 1e-12,
                          max_iter=50000, device="cpu")
    assert fit.converged
    # the gap is second-order in the residual, so it bounds the residual only to its square root
    # (the first example: 1.2e-6 at a relative gap of 7.7e-13)
    assert kkt_residual(x, y, fit, bias=False) <= residual_bound(x, fit)
    # the same holds for the bias's gradient r (the shift δ = N·r of the dual point costs O(r²))
    assert bias_gradient(x, y, fit) <= residual_bound(x, fit)


@pytest.mark.parametrize("group", [False, True])
def test_lambda_max_is_the_smallest_lambda_with_zero_weights(group):
    x, y = make_data(d=6, c=4)
    top = lambda_max(x, y, 0.8, group=group)
    at = fit_elastic_net(x, y, top * 1.0001, alpha=0.8, group=group, tol=1e-12, device="cpu")
    below = fit_elastic_net(x, y, top * 0.95, alpha=0.8, group=group, tol=1e-12, device="cpu")
    assert (at.weight == 0).all()
    assert (below.weight != 0).any()
    # at W = 0 the optimal bias is the log class frequency (up to a shift)
    prior = torch.log(torch.bincount(y).double() / len(y))
    assert torch.allclose(at.bias - at.bias.mean(), prior - prior.mean(), atol=1e-6)


def test_path_warm_starts_agree_with_cold_solves():
    x, y = make_data(d=10, c=3, seed=3)
    path = elastic_net_path(x, y, alpha=0.9, n_lambdas=8, epsilon=0.01, tol=1e-12, max_iter=20000,
                            device="cpu", progress=False)
    assert len(path) == 8 and (path.weights[0] == 0).all() and path.converged.all()
    assert torch.all(path.lambdas[1:] < path.lambdas[:-1])
    for i in (2, 5, 7):
        cold = fit_elastic_net(x, y, float(path.lambdas[i]), alpha=0.9, tol=1e-12, max_iter=20000,
                               device="cpu")
        assert float(path.objectives[i]) == pytest.approx(cold.objective, rel=1e-8, abs=1e-10)
        fit = path.entry(i)
        assert kkt_residual(x, y, fit) < 1e-5
    # accuracy reported matches the stored weights
    acc = ((x @ path.weights[-1].T + path.biases[-1]).argmax(1) == y).double().mean()
    assert float(path.train_accuracy[-1]) == pytest.approx(float(acc))


def test_max_features_stops_the_path_early():
    x, y = make_data(d=10, c=3, seed=1)
    path = elastic_net_path(x, y, alpha=0.8, group=True, n_lambdas=40, max_features=3,
                            device="cpu", progress=False)
    used = path.features_used
    assert used[-1] > 3 and (used[:-1] <= 3).all() and len(path) < 40


def test_float32_path_reaches_the_float64_objective():
    x, y = make_data(d=12, c=4, seed=2)
    p64 = elastic_net_path(x, y, n_lambdas=6, epsilon=0.05, tol=1e-7, device="cpu", progress=False)
    p32 = elastic_net_path(x.float(), y, n_lambdas=6, epsilon=0.05, tol=1e-4, device="cpu", progress=False)
    assert torch.allclose(p32.objectives, p64.objectives, rtol=1e-4)


def saga_objective(x, y, lam, alpha):
    """Our objective at scikit-learn saga's solution (C = 1/(N·λ), l1_ratio = α), run to tol 1e-8."""
    clf = LogisticRegression(C=1 / (x.shape[0] * lam), l1_ratio=alpha, penalty="elasticnet", solver="saga",
                             tol=1e-8, max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x.numpy(), y.numpy())
    return elastic_net_objective(x, y, torch.tensor(clf.coef_), torch.tensor(clf.intercept_), lam, alpha)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 8), c=st.integers(2, 4),
       alpha=st.sampled_from([0.5, 0.9, 0.99, 1.0]), frac=st.floats(0.02, 0.9),
       n_iter=st.integers(1, 40), group=st.booleans())
def test_certified_gap_bounds_the_true_suboptimality(seed, d, c, alpha, frac, n_iter, group):
    # Stopped early (n_iter iterations), the point is far from optimal and the gap is large; it must
    # still bound P − P* ≥ P − P_ref. The reference: the better of a tight solve of ours and (no group,
    # ≥ 3 classes: saga fits one logit for two) scikit-learn saga at tol 1e-8, so P_ref ≥ P*.
    x, y = make_data(n=60, d=d, c=c, seed=seed)
    lam = frac * lambda_max(x, y, alpha, group=group)
    rough = fit_elastic_net(x, y, lam, alpha=alpha, group=group, max_iter=n_iter, device="cpu",
                            tol=0.0)
    tight = fit_elastic_net(x, y, lam, alpha=alpha, group=group, tol=1e-10, max_iter=50_000, device="cpu")
    ref = tight.objective if group or c == 2 else min(tight.objective, saga_objective(x, y, lam, alpha))
    assert 0 <= rough.gap < float("inf")
    assert rough.objective - ref <= rough.gap * rough.objective + 1e-12
    assert tight.gap <= 1e-10 and tight.converged
    # not vacuous: the certificate of the tight solve is within a few rounding errors of the truth
    assert tight.objective - ref <= 1e-10 * tight.objective + 1e-12


def wine():
    x, y = load_wine(return_X_y=True)
    return standardize(torch.tensor(x, dtype=torch.float64))[0], torch.tensor(y)


def test_default_path_is_within_1e_4_of_saga_on_a_public_dataset():
    # scikit-learn's wine data (not ours), α = 0.99, λ/λ_max from 1 to 0.01, default settings. The
    # former default stopping rule (proximal-gradient residual ≤ 1e-4) ended 1.3e-4 above the
    # reference at 0.01·λ_max.
    x, y = wine()
    alpha = 0.99
    lams = torch.tensor([1, 0.3, 0.1, 0.03, 0.01], dtype=torch.float64) * lambda_max(x, y, alpha)
    path = elastic_net_path(x, y, alpha=alpha, lambdas=lams, device="cpu", progress=False)
    refs = torch.tensor([saga_objective(x, y, lam, alpha) for lam in lams.tolist()], dtype=torch.float64)
    assert path.converged.all() and (path.gaps <= 1e-4).all()
    assert ((path.objectives - refs) / refs <= 1e-4).all()
    assert ((path.objectives - refs) / refs <= path.gaps + 1e-9).all()  # the certificate holds
    assert path.entry(4).gap == float(path.gaps[4])


def test_unreachable_tolerance_still_checks_the_screened_out_columns():
    # A tolerance the screened (restricted) problem cannot reach used to spend the whole budget on
    # the first active set, ending at the restricted optimum (objective 0.67205 vs 0.67055 here).
    x, y = make_data()
    good = fit_elastic_net(x, y, 0.01, alpha=1.0, tol=1e-9, max_iter=5000, device="cpu")
    stuck = fit_elastic_net(x, y, 0.01, alpha=1.0, tol=0.0, max_iter=3000, device="cpu")
    assert good.converged and (not stuck.converged or stuck.gap == 0)  # a gap of 0 in rounding meets tol 0
    assert stuck.objective == pytest.approx(good.objective, rel=1e-9)
    assert stuck.gap <= 1e-6


def test_bad_input_is_rejected_with_clear_errors():
    x, y = make_data(d=4)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        elastic_net_path(bad, y, progress=False, device="cpu")
    flat = x.clone()
    flat[:, 2] = 1.5
    with pytest.raises(ValueError, match="zero variance"):
        fit_elastic_net(flat, y, 0.1, device="cpu")
    with pytest.raises(ValueError, match="zero variance"):
        standardize(flat)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        fit_elastic_net(x, y, 0.1, num_classes=2, device="cpu")
    with pytest.raises(ValueError, match="labels must lie"):
        fit_elastic_net(x, y - 1, 0.1, device="cpu")
    with pytest.raises(TypeError, match="integer class indices"):
        fit_elastic_net(x, y.double(), 0.1, device="cpu")
    with pytest.raises(ValueError, match="alpha"):
        fit_elastic_net(x, y, 0.1, alpha=1.5, device="cpu")
    with pytest.raises(ValueError, match="non-increasing"):
        elastic_net_path(x, y, lambdas=torch.tensor([0.1, 0.2]), progress=False, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        fit_elastic_net(x, y[:-1], 0.1, device="cpu")
    with pytest.raises(ValueError, match="must be > 0"):
        fit_elastic_net(x, y, 0.0, device="cpu")
    with pytest.raises(ValueError, match="positive"):
        elastic_net_path(x, y, lambdas=torch.tensor([0.1, 0.0]), progress=False, device="cpu")


def test_anderson_weights_recover_the_fixed_point_of_a_linear_iteration():
    # For u ← A u + b in dimension 3, five iterates (four differences r_k = A^k r_0, which the
    # minimal polynomial of A makes dependent) give Anderson weights with Σ c_k r_k = 0, so the
    # combination Σ c_k u_{k+1} is the fixed point (I − A)⁻¹ b itself, far beyond the last iterate.
    from companion.solvers.elastic_net.solve import _anderson_weights

    gen = torch.Generator().manual_seed(0)
    a = 0.9 * torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    u = [torch.zeros(3, dtype=torch.float64)]
    for _ in range(5):
        u.append(a @ u[-1] + b)
    c = _anderson_weights(torch.stack(u[:5]))
    fixed = torch.linalg.solve(torch.eye(3, dtype=torch.float64) - a, b)
    assert float(c.sum()) == pytest.approx(1.0)
    err = float((c @ torch.stack(u[1:5]) - fixed).norm())
    assert err <= 1e-5 * float((u[4] - fixed).norm())  # the plain iterate is still far off
    assert _anderson_weights(torch.stack([u[0]] * 4)) is None  # no progress: no weights


@pytest.mark.parametrize("group", [False, True])
def test_default_path_certifies_its_gap_and_satisfies_kkt(group):
    # Every entry reports gap ≤ tol and converged, and the returned points satisfy the optimality
    # conditions up to a residual scaled by λ.
    x, y = wine()
    path = elastic_net_path(x, y, alpha=0.99, group=group, n_lambdas=8, epsilon=0.01, device="cpu",
                            progress=False)
    assert path.converged.all() and (path.gaps <= 1e-4).all() and (path.gaps >= 0).all()
    for i in range(1, len(path)):
        fit = path.entry(i)
        assert fit.gap == float(path.gaps[i])
        assert kkt_residual(x, y, fit) <= 0.05 * fit.lam


def separable(n=400, d=12, c=25, seed=0):
    """Many classes, few points each, correlated columns: nearly separable and ill-conditioned at small λ."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    base = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    x = base @ torch.randn(3, d, generator=gen, dtype=torch.float64) + 0.3 * torch.randn(
        n, d, generator=gen, dtype=torch.float64)
    x += torch.randn(c, d, generator=gen, dtype=torch.float64)[y]
    return standardize(x)[0], y


@pytest.mark.parametrize("group", [False, True])
def test_newton_and_gradient_solvers_agree_on_a_nearly_separable_many_class_path(group, monkeypatch):
    # The Newton steps (supports up to GRAM_MAX columns) and the proximal-gradient solver (beyond)
    # reach the same certified objectives down to 0.001·λ_max, where the fit is ill-conditioned;
    # the Newton path's entries meet their KKT conditions.
    import companion.solvers.elastic_net.solve as solve

    x, y = separable()
    opts = dict(alpha=0.99, group=group, n_lambdas=12, epsilon=1e-3, device="cpu", progress=False)
    newton = elastic_net_path(x, y, tol=1e-7, **opts)
    monkeypatch.setattr(solve, "GRAM_MAX", -1)
    gradient = elastic_net_path(x, y, tol=1e-4, max_iter=200_000, **opts)
    assert newton.converged.all() and (newton.gaps <= 1e-7).all()
    assert float(newton.train_accuracy[-1]) > 0.95  # nearly separable indeed
    excess = (gradient.objectives - newton.objectives) / newton.objectives
    assert (excess >= -1e-7).all()  # the Newton path is never worse than its certificate allows
    assert (excess <= gradient.gaps + 1e-12).all()
    for i in range(1, len(newton)):
        assert kkt_residual(x, y, newton.entry(i)) <= 1e-3 * float(newton.lambdas[i])


def test_a_zero_tolerance_stops_at_max_iter_with_an_honest_gap():
    # An example hypothesis found: with tol = 0 the restricted problem's gap reached exactly 0 in
    # no iterations while the full one stayed above it, and the rounds repeated without end.
    x, y = make_data(n=60, d=6, c=3, seed=2840)
    lam = 0.5395160490567402 * lambda_max(x, y, 0.5)
    fit = fit_elastic_net(x, y, lam, alpha=0.5, max_iter=32, tol=0.0, device="cpu")
    assert fit.n_iter <= 32
    assert 0 <= fit.gap < 1e-12


def test_predictor_extrapolates_linearly_in_log_lambda_and_keeps_signs():
    # W(λ) = A + B log λ is reproduced exactly; entries that would cross zero, and zeros, stay at 0.
    from companion.solvers.elastic_net.solve import _predict

    lams = (0.5, 0.25, 0.125)  # equal steps in log λ: the next is last + (last − previous)
    a = torch.tensor([[1.0, -2.0, 0.0], [0.3, 0.0, 4.0]], dtype=torch.float64)
    b = torch.tensor([[-0.1, 0.2, 0.0], [0.5, 0.0, -0.3]], dtype=torch.float64)
    w = [a + b * torch.log(torch.tensor(v, dtype=torch.float64)) for v in lams]
    bias = [torch.tensor([0.1, -0.1]) * i for i in range(3)]
    pred_w, pred_b = _predict(lams, (w[0], bias[0]), (w[1], bias[1]), group=False)
    assert torch.allclose(pred_w, w[2]) and torch.allclose(pred_b, bias[2])
    # an entry shrinking fast enough to cross zero is stopped at zero
    shrink = (torch.tensor([[1.0, 0.0]]), torch.zeros(1)), (torch.tensor([[0.4, 0.0]]), torch.zeros(1))
    assert _predict(lams, *shrink, group=False)[0].tolist() == [[0.0, 0.0]]
    # group: a column that would turn against the last one is set to zero as a whole
    turn = (torch.tensor([[3.0], [0.0]]), torch.zeros(2)), (torch.tensor([[0.5], [0.5]]), torch.zeros(2))
    assert _predict(lams, *turn, group=True)[0].tolist() == [[0.0], [0.0]]  # (−2, 1)·(0.5, 0.5) < 0
    assert _predict(lams, *turn, group=False)[0].tolist() == [[0.0], [1.0]]
    assert _predict((0.5, 0.5, 0.25), (w[0], bias[0]), (w[1], bias[1]), group=False) is None


@pytest.mark.parametrize("group", [False, True])
def test_the_predictor_does_not_change_the_certified_path(group, monkeypatch):
    # With and without the predictor step every λ is certified at tol, so the objectives agree to
    # within the certificates; the predictor only saves Newton iterations.
    import companion.solvers.elastic_net.solve as solve

    x, y = separable(n=300, d=10, c=12, seed=4)
    opts = dict(alpha=0.99, group=group, n_lambdas=25, epsilon=1e-3, tol=1e-6, device="cpu",
                progress=False)
    with_predictor = elastic_net_path(x, y, **opts)
    monkeypatch.setattr(solve, "_predict", lambda *args: None)
    without = elastic_net_path(x, y, **opts)
    assert with_predictor.converged.all() and without.converged.all()
    bound = torch.maximum(with_predictor.gaps, without.gaps) * without.objectives + 1e-12
    assert ((with_predictor.objectives - without.objectives).abs() <= bound).all()
    assert int(with_predictor.n_iter.sum()) <= int(without.n_iter.sum())


def test_support_step_is_skipped_only_while_violations_cannot_keep_the_gap_above_tol():
    from companion.solvers.elastic_net.newton import _support_is_short

    weight = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    lam, alpha, primal, tol = 0.1, 0.5, 1.0, 1e-4
    # the zero weight's gradient exceeds λα = 0.05 by e: its share of the gap is e²/(2λ(1−α)) = 10 e²
    small = torch.tensor([[0.0, 0.05 + 5e-4]], dtype=torch.float64)  # 2.5e-6 ≤ 0.1·tol·P = 1e-5
    large = torch.tensor([[0.0, 0.05 + 1e-2]], dtype=torch.float64)  # 1e-3 > 1e-5
    assert not _support_is_short(small, weight, primal, lam, alpha, False, tol)
    assert _support_is_short(large, weight, primal, lam, alpha, False, tol)
    assert _support_is_short(small, weight, primal, 0.05, 1.0, False, tol)  # α = 1: first order
    assert not _support_is_short(small * 0.5, weight, primal, lam, alpha, False, tol)  # no violation
    assert _support_is_short(small, weight, primal, lam, alpha, False, 0.0)  # tol 0: always step
