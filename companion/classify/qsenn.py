"""Q-SENN: a ternary last layer {−m, 0, +m}, fitted, fine-tuned and fitted again.

The recipe of Norrenbrock et al. (2024) on cached pooled features f (N × D):

1. ``select_features`` (SLDD's, reused): n_f features by the group-lasso path, in iteration 0 only.
2. ``elastic_net_path`` (α = 0.99) on the n_f selected, standardised features; the least
   regularised solution W^d (λ = ε·λ_max, the path's last entry) and its bias b^d. The paper
   runs glm-saga's whole path every time; ``refit_lambdas`` walks the refits of the later
   iterations down a shorter geometric path to the same last λ: only that entry is used, and
   with α < 1 the objective is strongly convex in W, so it is one unique minimiser whichever
   route reaches it (each route certified by the same duality gap).
3. ``quantise_ternary``: τ = the midpoint between the (k·n_c)-th and (k·n_c + 1)-th largest |W^d|;
   the k·n_c entries above it become sign(w)·m with one global m = mean |w| of the kept entries,
   the rest 0.
4. ``qsenn_bias``: t_c = n⁺_c − n⁻_c, d_c = t_c − min t, B = max |b^d|,
   b_c = clip(B − d_c · 2B / max d, −B, B): classes with more net positive weights get a lower bias.
5. ``SparseLayer(selection, W, μ, σ, b)`` frozen (μ, σ trainable), then fine-tuning.

``QSENN(n_features, per_class).fit(features)`` runs steps 1–5 once (the one last-layer interface);
``QSENN.iterate(model, data, schedule)`` repeats them with features re-extracted from the
fine-tuned model, as the paper's four iterations (``paper_schedule``: 10, 10, 10, 40 epochs at
lr·0.9^i). Two sharp edges of the released code are not reproduced: ``torch.bucketize`` there
gives the single largest negative weight +m, and the bias rule divides by max d = 0 when every
class has the same net count (here: every class gets bias B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..features import FeatureSet, extract_features
from ..solvers.elastic_net import (
    ElasticNetPath,
    constant_columns,
    elastic_net_path,
    lambda_grid,
    lambda_max,
    standardize,
)
from .base import LastLayer
from .sldd import FeatureSelection, _check_sizes, keep_largest, select_features
from .sparse import SparseLayer

__all__ = ["QSENN", "Iteration", "Ternary", "paper_schedule", "quantise_ternary", "qsenn_bias"]


@dataclass(frozen=True)
class Ternary:
    """A quantised matrix: ``weight`` ∈ {−m, 0, +m}, its ``m`` and the threshold τ on |w|."""

    weight: Tensor  # (n_c, n_f)
    m: float
    threshold: float
    n_tied: int  # entries with |w| equal to the (k·n_c)-th largest that were dropped by position


def quantise_ternary(weight: Tensor, per_class: float) -> Ternary:
    """Q-SENN's quantisation of a dense solution W^d to {−m, 0, +m} with k·n_c non-zeros.

    τ is the midpoint between the (k·n_c)-th and (k·n_c + 1)-th largest |w| (0 when k·n_c is
    every entry). Exactly k·n_c entries are kept (all non-zero ones where W^d has fewer: then
    τ = 0, as the paper's rule gives). Where |w| ties across τ (the midpoint then falls on the
    tied value), the tied entries are taken in row-major order until the count is reached, and
    ``n_tied`` says how many tied entries were dropped. Every kept entry keeps its
    sign; m is the mean |w| of the kept entries, so m > 0.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2 or weight.numel() == 0:
        raise ValueError("weight must be a non-empty (n_classes, n_features) tensor.")
    if not torch.isfinite(weight).all():
        raise ValueError("weight contains NaN or infinite values.")
    n_classes = weight.shape[0]
    n_keep = round(float(per_class) * n_classes)
    if per_class <= 0 or n_keep < 1:
        raise ValueError(f"per_class (k) must be positive, got {per_class}.")
    if n_keep > weight.numel():
        raise ValueError(f"k·n_c = {per_class:g}·{n_classes} = {n_keep} weights to keep, but the "
                         f"matrix has only {weight.numel()} entries ({n_classes} classes × "
                         f"{weight.shape[1]} features); lower per_class or select more features.")
    if not (weight != 0).any():
        raise ValueError("the solution is all zero, so there is nothing to quantise: the path "
                         "did not reach a λ small enough for any weight to enter; fit it further "
                         "(smaller epsilon, more n_lambdas) or check that the features vary.")
    magnitude = weight.abs().flatten().double()
    ordered = torch.sort(magnitude, descending=True).values
    last = float(ordered[n_keep - 1])
    following = float(ordered[n_keep]) if n_keep < len(ordered) else 0.0
    threshold = (last + following) / 2
    kept = keep_largest(weight, n_keep) != 0
    n_tied = int(((magnitude.view_as(weight) == last) & ~kept).sum()) if following == last > 0 else 0
    m = weight.abs()[kept].double().mean().to(weight.dtype)  # one value, in W's precision
    ternary = torch.where(kept, torch.sign(weight) * m, torch.zeros_like(weight))
    return Ternary(ternary, float(m), threshold, n_tied)


def qsenn_bias(ternary: Tensor, dense_bias: Tensor) -> Tensor:
    """Q-SENN's bias: b_c = clip(B − d_c·2B/max d, ±B), d_c = t_c − min t, t_c = n⁺_c − n⁻_c.

    B = max |b^d| of the dense solution's bias. Where every class has the same net count
    (max d = 0, a division by zero in the released code) every class gets B: a common bias
    changes no decision.
    """
    ternary = torch.as_tensor(ternary)
    dense_bias = torch.as_tensor(dense_bias)
    if ternary.ndim != 2 or dense_bias.shape != (ternary.shape[0],):
        raise ValueError(f"need a (n_classes, n_features) matrix and one bias per class, got "
                         f"{tuple(ternary.shape)} and {tuple(dense_bias.shape)}.")
    net = (ternary > 0).sum(dim=1) - (ternary < 0).sum(dim=1)
    d = (net - net.min()).double()
    top = float(dense_bias.abs().max())
    if float(d.max()) == 0:
        return torch.full((ternary.shape[0],), top, dtype=torch.float32)
    return (top - d * 2 * top / d.max()).clamp(-top, top).float()


def paper_schedule(epochs: tuple[int, ...] = (10, 10, 10, 40), lr: float = 1e-4,
                   decay: float = 0.9) -> tuple[tuple[int, float], ...]:
    """(epochs, lr) per iteration: the paper's 10, 10, 10, 40 epochs at lr · 0.9^i by default."""
    if not epochs or any(int(e) < 1 for e in epochs):
        raise ValueError(f"every iteration needs at least one epoch, got {epochs}.")
    if lr <= 0 or not 0 < decay <= 1:
        raise ValueError(f"need lr > 0 and 0 < decay ≤ 1, got lr={lr}, decay={decay}.")
    return tuple((int(e), lr * decay ** i) for i, e in enumerate(epochs))


@dataclass(frozen=True)
class Iteration:
    """One Q-SENN iteration: the ternary layer fitted on the current features, then fine-tuned."""

    index: int
    epochs: int
    lr: float
    ternary: Ternary
    bias: Tensor
    start_accuracy: float  # test accuracy of the new layer on the current backbone
    accuracy: float  # after fine-tuning


class QSENN(LastLayer):
    """Q-SENN's last layer: SLDD's selection, the least regularised path entry, quantised to ±m.

    Fitted state: ``selection_`` (the group path and order of entry; reused when ``fit`` is given
    ``selection``), ``path_``, ``dense_weight_`` and ``dense_bias_`` (W^d, b^d), ``ternary_`` (W,
    m, τ), ``mean_`` and ``std_``, ``constant_`` (selected features that no longer vary, e.g. a
    map that stopped firing during fine-tuning: they keep z = 0 and no weight) and ``layer_``
    (the frozen ``SparseLayer``); after ``iterate``, ``iterations_``, ``test_features_`` (the
    final model's test features) and ``fit_test_features_`` (those of the backbone the last fit
    was made on, before its fine-tuning: the fitted state above belongs to them).
    """

    def __init__(self, n_features: int = 50, per_class: int = 5, *, select_alpha: float = 0.8,
                 alpha: float = 0.99, n_lambdas: int = 100, epsilon: float = 1e-3,
                 tol: float = 1e-4, max_iter: int = 2000, refit_lambdas: int | None = None,
                 device: str | torch.device | None = None, progress: bool = True):
        if refit_lambdas is not None and not 2 <= int(refit_lambdas) <= int(n_lambdas):
            raise ValueError(f"refit_lambdas must lie in [2, n_lambdas={n_lambdas}] (points on "
                             f"the refits' paths; None: n_lambdas), got {refit_lambdas}.")
        self.n_features, self.per_class = n_features, per_class
        self.refit_lambdas = refit_lambdas
        self.select_alpha, self.alpha, self.n_lambdas = select_alpha, alpha, n_lambdas
        self.epsilon, self.tol, self.max_iter = epsilon, tol, max_iter
        self.device, self.progress = device, progress

    def _fit(self, pooled: Tensor, labels: Tensor, maps: Tensor | None,
             selection: FeatureSelection | None = None, refit: bool = False) -> None:
        """Steps 1–5; ``selection`` (an earlier fit's ``selection_``) skips step 1.

        ``refit=True`` (a later iteration's fit) walks a path of ``refit_lambdas`` points to the
        same last λ where that is set.
        """
        _check_sizes(pooled.shape[1], self.n_features, self.per_class)
        opts = dict(n_lambdas=self.n_lambdas, epsilon=self.epsilon, tol=self.tol,
                    max_iter=self.max_iter, device=self.device, progress=self.progress)
        if selection is None:
            selection = select_features(pooled, labels, self.n_features, alpha=self.select_alpha,
                                        **opts)
        elif len(selection.indices) != self.n_features or int(selection.indices.max()) >= \
                pooled.shape[1]:
            raise ValueError(f"selection must hold {self.n_features} indices into the "
                             f"{pooled.shape[1]} features, got {len(selection.indices)} up to "
                             f"{int(selection.indices.max())}.")
        self.selection_ = selection
        chosen = pooled[:, selection.indices]
        # a selected map that stopped firing after fine-tuning: it keeps z = 0 and gets no weight
        constant = constant_columns(chosen)
        if constant.all():
            raise ValueError(f"all {len(constant)} selected features are constant over these "
                             "samples; they carry no information: check the model and data, or "
                             "fit without selection to select features again.")
        self.constant_ = selection.indices[constant.to(selection.indices.device)]
        z, mean, std = standardize(chosen[:, ~constant])
        self.mean_, self.std_ = chosen.mean(dim=0), torch.ones(len(constant))
        self.mean_[~constant], self.std_[~constant] = mean, std
        # the path on the varying ones (path_.weights has their columns only)
        lambdas = self.refit_path(z, labels) if refit and self.refit_lambdas else None
        self.path_: ElasticNetPath = elastic_net_path(z, labels, alpha=self.alpha, lambdas=lambdas,
                                                      num_classes=self.n_classes_, **opts)
        self.dense_weight_ = torch.zeros(self.n_classes_, len(constant))
        self.dense_weight_[:, ~constant] = self.path_.weights[-1].float().cpu()
        self.dense_bias_ = self.path_.biases[-1].float().cpu()
        self.ternary_ = quantise_ternary(self.dense_weight_, self.per_class)
        bias = qsenn_bias(self.ternary_.weight, self.dense_bias_)
        self.layer_ = SparseLayer(selection.indices, self.ternary_.weight, self.mean_, self.std_,
                                  bias)

    def refit_path(self, z: Tensor, labels: Tensor) -> Tensor:
        """``refit_lambdas`` log-spaced λ from λ_max to the full path's last λ (to the bit)."""
        top = lambda_max(z, labels, self.alpha, num_classes=self.n_classes_)
        short = lambda_grid(top, int(self.refit_lambdas), self.epsilon)
        short[-1] = lambda_grid(top, self.n_lambdas, self.epsilon)[-1]
        return short

    def iterate(self, model: nn.Module, data: Any, schedule: tuple[tuple[int, float], ...],
                *, checkpoint: str | None = None, refit_first: bool = True,
                **finetune_kwargs: Any) -> nn.Module:
        """The paper's loop: fit on the current model's features, attach, fine-tune; repeat.

        ``data`` is a :class:`~companion.classify.ClassificationData` (``eval_train`` for the
        features, ``train`` for fine-tuning, ``test`` for the accuracies); ``schedule`` holds
        (epochs, lr) per iteration (``paper_schedule``). Returns the fine-tuned model and keeps
        one :class:`Iteration` per round in ``iterations_``. ``checkpoint`` (a path prefix) caches
        each round's fine-tuning; other keywords go to :func:`~companion.classify.finetune`.
        ``refit_first=False`` starts from the current fit (``fit`` on ``model``'s features of
        ``data.eval_train``, as a chapter does step by step) instead of fitting the same again.
        From the second round on the refit keeps the selection and, with ``refit_lambdas``, walks
        the shorter path to the same last λ.
        The test accuracies are read from one pass over ``data.test`` per backbone (the new
        layer's and the fine-tuned model's of the round before share it); the final model's
        test features are kept in ``test_features_``, those the last fit's layer started on in
        ``fit_test_features_``.
        """
        from .finetune import finetune

        if not schedule:
            raise ValueError("schedule needs at least one (epochs, lr) iteration.")
        if not refit_first:
            self._fitted()
            width = getattr(model, "num_features", self.n_input_)
            if width != self.n_input_:
                raise ValueError(f"refit_first=False reuses a fit on {self.n_input_} features, "
                                 f"but the model has {width}: fit on this model's features "
                                 "first, or leave refit_first=True.")
        records, selection, current = [], None, model
        test = None  # the test features of the current backbone: one pass per backbone
        for i, (epochs, lr) in enumerate(schedule):
            if i > 0 or refit_first:
                fs = extract_features(current, data.eval_train, progress=self.progress)
                self.fit(fs, selection=selection, refit=selection is not None)
            selection = self.selection_
            current = self.attach(current)
            if test is None:
                test = extract_features(current, data.test, progress=self.progress)
            fit_test = test  # the features the new layer starts on
            start = _accuracy(current.head, test)
            finetune(current, current.head, data.train, epochs=int(epochs), lr=float(lr),
                     checkpoint=None if checkpoint is None else f"{checkpoint}_it{i}",
                     **{"progress": self.progress, **finetune_kwargs})
            test = extract_features(current, data.test, progress=self.progress)
            records.append(Iteration(i, int(epochs), float(lr), self.ternary_, self.layer_.bias,
                                     start, _accuracy(current.head, test)))
        self.iterations_ = tuple(records)
        self.layer_ = current.head
        self.test_features_, self.fit_test_features_ = test, fit_test
        return current


def _accuracy(head: nn.Module, features: FeatureSet) -> float:
    """Top-1 accuracy of a head on pooled features, as ``evaluate`` gives it on the model."""
    device = next(iter(head.buffers())).device
    with torch.no_grad():
        logits = head(features.pooled.to(device))
    return float((logits.argmax(1).cpu() == features.labels).double().mean())
