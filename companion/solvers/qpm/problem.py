"""The assignment problem: input checks, the result, the objective and the constraint check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from .extension import QPMExtension

SOLVERS = ("HIGHS", "SCIP", "heuristic")


class NotProvenOptimalWarning(UserWarning):
    """The returned assignment is feasible but its optimality is not proven."""


@dataclass(frozen=True)
class AssignmentResult:
    """A solution of the assignment problem with the solver's account of it.

    ``assignment`` is W (C×N, 0/1) over all N features, ``selected`` the indices j with s_j = 1.
    ``bound`` is an upper bound on the optimum, ``gap = (bound − objective) / max(|objective|, 1)``.
    """

    assignment: np.ndarray
    selected: np.ndarray
    status: str
    objective: float
    bound: float
    gap: float
    seconds: float
    n_lazy_rounds: int
    solver: str
    n_candidates: int = 0
    history: tuple[tuple[str, float | None, float], ...] = field(default=(), repr=False)

    @property
    def proven_optimal(self) -> bool:
        """True when the solver proved the gap closed (within its tolerance)."""
        return self.status == "optimal"


def symmetric_pairs(R: np.ndarray, name: str = "redundancy (R)") -> np.ndarray:
    """Symmetric R with a zero diagonal from a symmetric or an upper-triangular R (R_ij, i < j, is read)."""
    lower = np.tril(R, -1)
    if lower.any() and not np.allclose(R, R.T, rtol=1e-6, atol=1e-12, equal_nan=True):
        i, j = (int(v[0]) for v in np.nonzero(lower))
        raise ValueError(f"{name} has entries below the diagonal (first: R[{i}, {j}] = {R[i, j]:g}) "
                         "but is not symmetric; only a symmetric or an upper-triangular R is "
                         "accepted (the pairs i < j, above the diagonal, are read). Pass R.T for a "
                         "lower-triangular R, or (R + R.T) / 2 to symmetrise it.")
    upper = np.triu(R, 1)
    return upper + upper.T


def check_stopping(time_limit: float, mip_gap: float) -> None:
    """Raise a clear error unless ``time_limit`` is positive and ``mip_gap`` a finite number ≥ 0."""
    if not time_limit > 0:
        raise ValueError(f"time_limit must be positive seconds; got {time_limit!r}.")
    try:
        gap = float(mip_gap)
    except (TypeError, ValueError):
        gap = math.nan
    if isinstance(mip_gap, bool) or not math.isfinite(gap) or gap < 0:
        raise ValueError(f"mip_gap must be a finite relative gap ≥ 0 (e.g. 1e-4; 0 asks for a proof "
                         f"of optimality); got {mip_gap!r}.")


def as_problem(similarity, redundancy, bias, n_features: int, per_class: int, penalty: float,
               unique: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the inputs and return float arrays ``A (C,N)``, symmetric ``R (N,N)``, ``b (N,)``."""
    A = np.asarray(similarity, dtype=float)
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"similarity (A) must be a 2-D array of shape (classes, features); got "
                         f"shape {A.shape}.")
    n_classes, n_all = A.shape
    if not np.all(np.isfinite(A)):
        raise ValueError(f"similarity (A) contains {int((~np.isfinite(A)).sum())} NaN/inf entries; "
                         "dead (constant) features give NaN correlations: drop them or use "
                         "companion.classify.qpm.qpm_similarity, which maps them to 0.")
    if redundancy is None:
        R = np.zeros((n_all, n_all))
    else:
        R = np.asarray(redundancy, dtype=float)
        if R.shape != (n_all, n_all):
            raise ValueError(f"redundancy (R) must have shape ({n_all}, {n_all}) to match A; got "
                             f"{R.shape}.")
        if not np.all(np.isfinite(R)) or (R < 0).any():
            raise ValueError("redundancy (R) must be finite and non-negative (the paper clips "
                             "negative similarities to 0); got negative or NaN entries.")
        R = symmetric_pairs(R)
    if bias is None:
        b = np.zeros(n_all)
    else:
        b = np.asarray(bias, dtype=float).reshape(-1)
        if b.shape != (n_all,) or not np.all(np.isfinite(b)):
            raise ValueError(f"bias (b) must be a finite vector of length {n_all}; got shape "
                             f"{np.shape(bias)}.")
    for name, value in (("n_features", n_features), ("per_class", per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if per_class > n_features:
        raise ValueError(f"per_class (k={per_class}) cannot exceed n_features (n_f={n_features}): "
                         "a class cannot use more features than are selected.")
    if n_features > n_all:
        raise ValueError(f"n_features (n_f={n_features}) exceeds the number of candidate features "
                         f"(N={n_all}); choose n_f ≤ N.")
    if unique and math.comb(n_features, per_class) < n_classes:
        raise ValueError(f"Unique class signatures are impossible: only C({n_features}, {per_class}) "
                         f"= {math.comb(n_features, per_class)} distinct {per_class}-subsets exist "
                         f"for {n_classes} classes. Increase n_features or per_class, or pass "
                         "unique=False.")
    if not np.isfinite(penalty) or penalty < 0:
        raise ValueError(f"penalty (λ) must be a finite non-negative number; got {penalty!r}.")
    return A, R, b


def assignment_objective(assignment: ArrayLike, selected: ArrayLike, similarity: ArrayLike,
                         redundancy: ArrayLike | None = None, bias: ArrayLike | None = None,
                         penalty: float = 1.0) -> float:
    """Z_A + Z_B − λ Z_R of a solution (``redundancy`` upper-triangular or symmetric)."""
    W = np.asarray(assignment, dtype=float)
    sel = np.asarray(selected, dtype=int)
    value = float((np.asarray(similarity, dtype=float) * W).sum())
    if bias is not None:
        value += float(np.asarray(bias, dtype=float)[sel].sum())
    if redundancy is not None and penalty:
        R = symmetric_pairs(np.asarray(redundancy, dtype=float))
        value -= penalty * float(R[np.ix_(sel, sel)].sum()) / 2
    return value


def check_assignment(assignment: ArrayLike, selected: ArrayLike, *, n_features: int,
                     per_class: int, unique: bool = True, extension: QPMExtension | None = None
                     ) -> None:
    """Raise ``ValueError`` naming the first constraint the solution violates (QPM's, then the
    ``extension``'s)."""
    W = np.asarray(assignment)
    sel = np.asarray(selected)
    if W.ndim != 2 or not np.isin(W, (0, 1)).all():
        raise ValueError("W must be a 2-D 0/1 matrix.")
    if sel.ndim != 1 or len(np.unique(sel)) != len(sel) or len(sel) != n_features:
        raise ValueError(f"Σ s = n_f violated: {len(np.unique(sel))} distinct features selected, "
                         f"expected {n_features}.")
    s = np.zeros(W.shape[1], dtype=bool)
    s[sel] = True
    if (W[:, ~s] != 0).any():
        raise ValueError("W ≤ s violated: a class uses a feature that is not selected.")
    rows = W.sum(axis=1)
    if (rows != per_class).any():
        bad = int(np.flatnonzero(rows != per_class)[0])
        raise ValueError(f"Σ_j W_cj = k violated: class {bad} has {int(rows[bad])} features, "
                         f"expected {per_class}.")
    if unique and len({r.tobytes() for r in W.astype(np.int8)}) != W.shape[0]:
        raise ValueError("Uniqueness violated: two classes share the same feature set.")
    if extension is not None:
        extension.check(W, sel)


def signature_groups(W: np.ndarray) -> list[list[int]]:
    """Groups of classes that share one feature set."""
    groups: dict[bytes, list[int]] = {}
    for c, row in enumerate(W):
        groups.setdefault(row.tobytes(), []).append(c)
    return [g for g in groups.values() if len(g) > 1]

