"""CHiQPM's forced sharing: chosen class pairs share exactly ``shared`` (k − 1) features."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .extension import ModelVariables, QPMExtension


class ForcedSharing(QPMExtension):
    """Each pair (c1, c2) in ``pairs`` shares exactly ``shared`` features: Σ_j W_c1j W_c2j = shared.

    CHiQPM (section 6.2) forces the int(C·ρ) most similar class pairs to share k − 1 features.
    The product is linearised exactly on the binary rows: z_j ≤ W_c1j, z_j ≤ W_c2j,
    z_j ≥ W_c1j + W_c2j − 1, Σ_j z_j = shared. ``shared=None`` means k − 1.
    """

    def __init__(self, pairs: Iterable[Sequence[int]], shared: int | None = None):
        self.pairs = [(int(a), int(b)) for a, b in pairs]
        if any(a == b or a < 0 or b < 0 for a, b in self.pairs):
            raise ValueError(f"pairs must join two different classes (non-negative indices); "
                             f"got {self.pairs}.")
        if shared is not None and (isinstance(shared, bool) or int(shared) != shared
                                   or shared < 0):
            raise ValueError(f"shared must be a non-negative integer or None; got {shared!r}.")
        self.shared = shared

    def _shared(self, k: int) -> int:
        shared = k - 1 if self.shared is None else self.shared
        if shared > k:
            raise ValueError(f"shared ({shared}) cannot exceed per_class (k={k}).")
        return shared

    def __repr__(self) -> str:
        return f"ForcedSharing(pairs={self.pairs}, shared={self.shared})"

    def exact_classes(self, n_classes: int) -> list[int]:
        classes = sorted({c for pair in self.pairs for c in pair})
        if classes and classes[-1] >= n_classes:
            raise ValueError(f"pair class {classes[-1]} is out of range for {n_classes} classes.")
        return classes

    def constraints(self, model: ModelVariables) -> list:
        import cvxpy as cp

        shared = self._shared(model.per_class)
        cons = []
        for a, b in self.pairs:
            wa, wb = model.rows[a], model.rows[b]
            z = cp.Variable(wa.shape[0], nonneg=True)  # z_j = W_aj · W_bj on binary rows
            cons += [z <= wa, z <= wb, z >= wa + wb - 1, cp.sum(z) == shared]
        return cons

    def check(self, assignment: np.ndarray, selected: np.ndarray) -> None:
        W = np.asarray(assignment)
        shared = self._shared(int(W[0].sum()) if len(W) else 0)
        for a, b in self.pairs:
            both = int((W[a] * W[b]).sum())
            if both != shared:
                raise ValueError(f"Forced sharing violated: classes {a} and {b} share {both} "
                                 f"features, expected {shared}.")

    def repair(self, assignment: np.ndarray, selected: np.ndarray,
               similarity: np.ndarray) -> np.ndarray | None:
        """Walk the pairs; re-fit the second class of each to the first: its best ``shared``
        features of the first's row plus its best k − shared others (optimal given that row)."""
        W = np.array(assignment, dtype=np.int8)
        A = np.asarray(similarity, dtype=float)
        sel = np.asarray(selected)
        k = int(W[0].sum())
        shared = self._shared(k)
        fixed: set[int] = set()
        for a, b in self.pairs:
            if b in fixed and a not in fixed:
                a, b = b, a
            fixed.add(a)
            if b in fixed:
                continue  # both placed by earlier pairs; check decides
            own = sel[W[a, sel] == 1]
            other = sel[W[a, sel] == 0]
            if len(own) < shared or len(other) < k - shared:
                return None
            row = np.zeros_like(W[b])
            row[own[np.argsort(-A[b, own], kind="stable")[:shared]]] = 1
            row[other[np.argsort(-A[b, other], kind="stable")[:k - shared]]] = 1
            W[b] = row
            fixed.add(b)
        try:
            self.check(W, sel)
        except ValueError:
            return None
        return W
