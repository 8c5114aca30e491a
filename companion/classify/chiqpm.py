"""CHiQPM: QPM with forced feature sharing, the Feature Grounding Loss and a ReLU'd binary layer.

The program is QPM's plus constraints through the solver's extension hook: the int(C·ρ) most
similar class pairs (Euclidean distance between rows of the dense A) share exactly k − 1
features (:class:`~companion.solvers.qpm.ForcedSharing`); then the paper's "idealise shares"
step keeps the selection, drops the forced equalities and asks that at least as many of the
pairs that now share k − 1 features keep doing so (:class:`~companion.solvers.qpm.IdealisedSharing`).
Fine-tuning adds 𝓛_feat (:func:`feature_grounding_loss`) on the paper's schedule, scaled to the
number of epochs (:func:`grounding_schedule`).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..batches import to_numpy
from ..losses import ExtraLoss
from ..solvers.qpm import AssignmentResult, ForcedSharing, IdealisedSharing, QPMExtension
from .finetune import finetune
from .qpm import QPM

__all__ = ["CHiQPM", "GROUNDING_WEIGHT", "feature_grounding_loss", "finetune_chiqpm",
           "forced_pairs", "grounding_schedule", "grounding_term", "sharing_pairs"]

GROUNDING_WEIGHT = 3.0  # λ of 𝓛_feat (the paper's lambda_feat)
GROUNDING_SHARE = 60 / 70  # λ is on for 60 of the paper's 70 fine-tuning epochs (10/10/10/40)


def forced_pairs(similarity, rho: float, *, acyclic: bool = False) -> list[tuple[int, int]]:
    """The int(C·ρ) class pairs with the closest rows of A (Euclidean, A divided by max |A|).

    ``acyclic`` skips a pair that would close a cycle among the pairs taken so far (the pairs
    then form a forest, which a constructive repair can always satisfy); the paper has no skip.
    """
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 <= rho <= 1:
        raise ValueError(f"rho (the share of classes that get a forced partner pair) must lie "
                         f"in [0, 1]; got {rho!r}. The paper uses 0.5.")
    A = to_numpy(similarity, float)
    C = A.shape[0]
    n = int(C * rho)
    available = C * (C - 1) // 2
    if n > available:
        raise ValueError(f"rho={rho} asks for {n} forced pairs but {C} classes have only "
                         f"{available}; lower rho.")
    peak = np.abs(A).max()
    A = A / peak if peak > 0 else A
    rows, cols = np.tril_indices(C, -1)
    dist = np.linalg.norm(A[rows] - A[cols], axis=1)
    order = np.argsort(dist, kind="stable")
    if not acyclic:
        return [(int(cols[i]), int(rows[i])) for i in order[:n]]
    root = list(range(C))

    def find(c: int) -> int:
        while root[c] != c:
            root[c] = root[root[c]]
            c = root[c]
        return c

    pairs = []
    for i in order:
        a, b = find(int(cols[i])), find(int(rows[i]))
        if len(pairs) == n:
            break
        if a != b:
            root[a] = b
            pairs.append((int(cols[i]), int(rows[i])))
    return pairs


def sharing_pairs(assignment, shared: int) -> list[tuple[int, int]]:
    """All class pairs whose rows of W share at least ``shared`` features."""
    W = to_numpy(assignment, int)
    return [(a, b) for a, b in itertools.combinations(range(len(W)), 2)
            if int(W[a] @ W[b]) >= shared]


def feature_grounding_loss(features: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """𝓛_feat: mean over images of (2·mean unassigned f − mean assigned f) / max(max |f|, 0.01).

    ``features`` (B, n_f) are the normalised, ReLU'd features, ``weight`` the binary W (C, n_f);
    the true class's row marks the assigned features. The factor 2 is the paper's.
    """
    w = weight[labels].to(features.dtype)
    n_on = w.sum(1)
    n_off = features.shape[1] - n_on
    assigned = (features * w).sum(1) / n_on.clamp_min(1)
    unassigned = (features * (1 - w)).sum(1) / n_off.clamp_min(1)
    scale = features.abs().amax(1).clamp_min(0.01)
    return ((2 * unassigned - assigned) / scale).mean()


def grounding_term(layer: nn.Module, weight: float = GROUNDING_WEIGHT) -> ExtraLoss:
    """λ·𝓛_feat as a fine-tuning term: ``finetune(..., extra_losses={"grounding": term})``.

    The term pools the head's selected maps and normalises them with ``layer`` (μ, σ, ReLU).
    """
    def term(maps: Tensor, logits: Tensor, W: Tensor, y: Tensor) -> Tensor:
        features = layer.normalize_selected(maps.mean(dim=(2, 3)))
        return weight * feature_grounding_loss(features, W, y)

    return term


def grounding_schedule(epochs: int) -> list[tuple[int, float]]:
    """``[(epochs, λ), …]``: the paper's λ = 3 for 60 of 70 epochs, scaled to ``epochs``.

    The paper fine-tunes in four stages (10/10/10/40 epochs) with λ on until epoch 30 of each
    stage; scaled, the first ⌈share⌉ epochs train with λ and the rest without.
    """
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}.")
    on = min(int(epochs), max(1, round(epochs * GROUNDING_SHARE)))
    return [(on, GROUNDING_WEIGHT)] + ([(int(epochs) - on, 0.0)] if on < epochs else [])


def finetune_chiqpm(model: nn.Module, layer: nn.Module, data: Any, *, epochs: int,
                    lr: float = 1e-4, **kwargs: Any) -> list:
    """Fine-tune under CHiQPM's layer: CE + 𝓛_div + λ·𝓛_feat, then (if any epochs are left)
    CE + 𝓛_div at lr·0.9, the paper's decay between stages. Returns the stages' Histories."""
    histories = []
    for i, (n, lam) in enumerate(grounding_schedule(epochs)):
        extra = {"grounding": grounding_term(layer, lam)} if lam else None
        histories.append(finetune(model, layer, data, epochs=n, lr=lr * 0.9 ** i,
                                  extra_losses=extra, **kwargs))
    return histories


class CHiQPM(QPM):
    """CHiQPM's last layer: QPM's program with forced sharing (ρ), idealised shares, ReLU layer.

    Fitted state beyond QPM's: ``pairs_`` (the forced pairs), ``pair_rule_`` (how they were
    chosen: the paper's closest pairs, or, where no assignment meeting them is found within the
    time limit, the closest pairs that close no cycle), ``forced_result_`` (the solve with
    forced sharing), ``result_`` (after idealising, or the forced one) and ``shared_pairs_``
    (pairs that share k − 1 features in the final W).
    """

    def __init__(self, n_features: int = 50, per_class: int = 5, *, rho: float = 0.5,
                 idealise: bool = True, relu: bool = True, **qpm_kwargs: Any):
        super().__init__(n_features, per_class, relu=relu, **qpm_kwargs)
        forced_pairs(np.zeros((3, 1)), rho)  # checks ρ before anything heavy
        self.rho, self.idealise = rho, idealise

    def _solve(self, extension: QPMExtension | None = None) -> AssignmentResult:
        k = self.per_class
        self.pairs_ = forced_pairs(self.problem_.raw_similarity, self.rho)
        self.pair_rule_ = "closest pairs (the paper's rule)"
        try:
            try:
                forced = super()._solve(ForcedSharing(self.pairs_))
            except RuntimeError:  # no assignment found in time: the closest pairs, cycle-free
                self.pairs_ = forced_pairs(self.problem_.raw_similarity, self.rho, acyclic=True)
                self.pair_rule_ = "closest pairs closing no cycle (fallback)"
                forced = super()._solve(ForcedSharing(self.pairs_))
        except ValueError as err:
            if "no feasible assignment" not in str(err):
                raise
            raise ValueError(f"CHiQPM's forced sharing is infeasible: {len(self.pairs_)} class "
                             f"pairs (rho={self.rho}) must each share exactly k − 1 = {k - 1} of "
                             f"their k = {k} features, with unique rows among n_f = "
                             f"{self.n_features} features. Lower rho or raise n_f.") from err
        self.forced_result_ = result = forced
        if self.idealise and self.pairs_:
            found = sharing_pairs(forced.assignment, k - 1)
            result = super()._solve(IdealisedSharing(found, len(self.pairs_), forced.selected,
                                                     fallback=forced.assignment))
        self.shared_pairs_ = sharing_pairs(result.assignment, k - 1)
        return result

    def features(self, pooled) -> Tensor:
        """The layer's normalised, ReLU'd features of pooled backbone features (B, n_f)."""
        with torch.no_grad():
            return self._fitted().normalize(torch.as_tensor(pooled).float())
