"""The extension point of QPM's MILP: extra variables and linear constraints (CHiQPM's sharing)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import cvxpy as cp


@dataclass(frozen=True)
class ModelVariables:
    """What an extension sees of one MILP round; features are indexed among the candidates.

    ``s`` is the selection (boolean, length ``len(features)``); ``rows(classes)`` is the
    (len(classes), len(features)) matrix of W for those classes (binary, an affine cvxpy
    expression; any of the extension's ``exact_classes``, repeats allowed), built in one sparse
    product so that constraints on many pairs stay one matrix constraint each; ``pairs`` holds
    y_ij ≥ s_i + s_j − 1 for the penalised pairs ``pair_index[:, t] = (i, j)`` (None without a
    penalty). ``features[j]`` is candidate j's index among all N features, so a constraint on a
    named feature looks it up with ``searchsorted``.
    """

    s: cp.Variable
    rows: Callable[[Sequence[int]], cp.Expression]
    pairs: cp.Variable | None
    pair_index: np.ndarray
    features: np.ndarray
    n_features: int
    per_class: int
    n_classes: int


class QPMExtension:
    """Extra variables and linear constraints for :func:`solve_assignment` (override what you need).

    Contract, which keeps the solver's answers correct:

    * ``constraints`` may create cvxpy variables and must return linear constraints on them, on
      ``s`` and on ``rows`` of ``exact_classes`` only (other classes' W is a windowed relaxation in
      the MILP and is replaced by each class's top k afterwards). The objective is not extensible.
    * The constraints only shrink the feasible set, so QPM's Lagrangian bound and its
      reduced-cost filtering stay valid upper bounds: they stay on.
    * The greedy/swap heuristic does not know the constraints: each of its solutions, and each
      repaired MILP round, becomes the incumbent (HiGHS's cutoff) only if it passes ``check``,
      as it is or after ``repair``; so does ``start``'s solution. With no such solution there is
      no incumbent and no cutoff: HiGHS runs its own heuristics, and only ``n_candidates``
      filters features.
    * ``check`` runs on every returned solution, after QPM's own constraints are checked.
    """

    def exact_classes(self, n_classes: int) -> Sequence[int]:
        """Classes whose W the constraints use: binary over all candidate features in the MILP."""
        return ()

    def constraints(self, model: ModelVariables) -> list[cp.Constraint]:
        """Linear constraints (on new variables, ``s`` and ``model.rows(...)``) for every round."""
        return []

    def check(self, assignment: np.ndarray, selected: np.ndarray) -> None:
        """Raise ``ValueError`` naming the extension's first constraint the solution violates."""

    def start(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A solution (W, selected) known before the solve, e.g. an earlier solve's; None: none.

        The solver takes it as its incumbent where it passes ``check`` and beats the heuristic.
        """
        return None

    def repair(self, assignment: np.ndarray, selected: np.ndarray,
               similarity: np.ndarray) -> np.ndarray | None:
        """A W with the same selection that passes ``check``, or None (the default: no repair).

        Called only on solutions that fail ``check``; ``similarity`` is A (C×N), for choosing
        the rows to change.
        """
        return None
