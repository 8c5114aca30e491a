"""CHiQPM's forced sharing: chosen class pairs share exactly ``shared`` (k − 1) features."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from .extension import ModelVariables, QPMExtension

W_DTYPE = np.int8  # the repaired rows' dtype (as the solver's W)


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
        """Re-fit the rows of each connected group of paired classes; None if that fails.

        First along a spanning tree from the group's first class: each child gets its best
        ``shared`` features of its parent's row plus its best k − shared others. Where the
        group's other pairs then fail (cycles), all its classes get one common core of ``shared``
        features, the group's best, and k − shared private features each.
        """
        W = np.array(assignment, dtype=np.int8)
        A = np.asarray(similarity, dtype=float)
        sel = np.asarray(selected)
        k = int(W[0].sum())
        shared = self._shared(k)
        taken: set[bytes] = set()  # rows of the groups fitted so far: frozen, so keep them unique
        for group, pairs in self._groups():
            fitted = _fit_tree(W.copy(), group, pairs, A, sel, k, shared, taken)
            if fitted is None or not _holds(fitted, pairs, shared):
                fitted = _fit_core(W.copy(), group, A, sel, k, shared)
            if fitted is None:
                return None
            W = fitted
            taken.update(W[c].tobytes() for c in group)
        try:
            self.check(W, sel)
        except ValueError:
            return None
        return W

    def _groups(self) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Connected groups of paired classes (in order of first appearance) with their pairs."""
        root: dict[int, int] = {}

        def find(c: int) -> int:
            while root.setdefault(c, c) != c:
                c = root[c]
            return c

        for a, b in self.pairs:
            root[find(a)] = find(b)
        groups: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
        for a, b in self.pairs:
            members, pairs = groups.setdefault(find(a), ([], []))
            members.extend(c for c in (a, b) if c not in members)
            pairs.append((a, b))
        return list(groups.values())


class IdealisedSharing(QPMExtension):
    """CHiQPM's "idealise shares": the selection fixed, any ``target`` of ``pairs`` share ≥ ``shared``.

    After the forced solve, ``pairs`` are all class pairs that share at least k − 1 features;
    the forced equalities are dropped and at least ``target`` of these pairs must keep sharing
    k − 1 (one binary indicator u_p per pair: Σ_j z_j ≥ shared · u_p, Σ_p u_p ≥ target), with
    the selection s fixed to ``selection``. ``fallback`` (the forced solution, which meets all
    this) is the repair, so the solver starts from it.
    """

    def __init__(self, pairs: Iterable[Sequence[int]], target: int, selection: Sequence[int],
                 shared: int | None = None, fallback: np.ndarray | None = None):
        self.sharing = ForcedSharing(pairs, shared)
        self.pairs = self.sharing.pairs
        if isinstance(target, bool) or int(target) != target or not 0 <= target <= len(self.pairs):
            raise ValueError(f"target must be an integer in [0, {len(self.pairs)}] (the number of "
                             f"pairs); got {target!r}.")
        self.target, self.shared = int(target), shared
        self.selection = np.sort(np.asarray(selection, dtype=int))
        self.fallback = None if fallback is None else np.asarray(fallback)

    def __repr__(self) -> str:
        return f"IdealisedSharing({len(self.pairs)} pairs, target={self.target})"

    def exact_classes(self, n_classes: int) -> list[int]:
        return self.sharing.exact_classes(n_classes)

    def constraints(self, model: ModelVariables) -> list:
        import cvxpy as cp

        pos = np.searchsorted(model.features, self.selection)
        if (pos >= len(model.features)).any() or (model.features[np.minimum(pos, len(model.features)
                                                                             - 1)] != self.selection).any():
            raise ValueError("IdealisedSharing: a fixed selected feature is not among the solver's "
                             "candidate features; solve with n_candidates=None.")
        shared = self.sharing._shared(model.per_class)
        cons = [model.s[pos] == 1]
        if not self.pairs:
            return cons
        keep = cp.Variable(len(self.pairs), boolean=True)
        for p, (a, b) in enumerate(self.pairs):
            wa, wb = model.rows[a], model.rows[b]
            z = cp.Variable(wa.shape[0], nonneg=True)
            cons += [z <= wa, z <= wb, z >= wa + wb - 1, cp.sum(z) >= shared * keep[p]]
        return cons + [cp.sum(keep) >= self.target]

    def check(self, assignment: np.ndarray, selected: np.ndarray) -> None:
        W = np.asarray(assignment)
        if not np.array_equal(np.sort(np.asarray(selected)), self.selection):
            raise ValueError("Idealised sharing violated: the selection differs from the fixed one.")
        shared = self.sharing._shared(int(W[0].sum()) if len(W) else 0)
        kept = sum(int(W[a] @ W[b]) >= shared for a, b in self.pairs)
        if kept < self.target:
            raise ValueError(f"Idealised sharing violated: {kept} of the pairs share {shared} "
                             f"features, at least {self.target} must.")

    def repair(self, assignment: np.ndarray, selected: np.ndarray,
               similarity: np.ndarray) -> np.ndarray | None:
        """The forced solution, where the selection is the fixed one."""
        if self.fallback is None or not np.array_equal(np.sort(selected), self.selection):
            return None
        try:
            self.check(self.fallback, selected)
        except ValueError:
            return None
        return self.fallback.copy()


def _holds(W: np.ndarray, pairs: list[tuple[int, int]], shared: int) -> bool:
    return all(int(W[a] @ W[b]) == shared for a, b in pairs)


def _fit_tree(W, group, pairs, A, sel, k, shared, taken=frozenset()) -> np.ndarray | None:
    """Breadth-first from ``group[0]``: fit each newly reached class to the class reaching it.

    A child keeps ``shared`` of its parent's features and adds k − shared others, the best such
    row (by the child's A) whose signature no class of the group, nor any row in ``taken``, has.
    """
    near: dict[int, list[int]] = {c: [] for c in group}
    for a, b in pairs:
        near[a].append(b)
        near[b].append(a)
    seen, queue = {group[0]}, [group[0]]
    if W[group[0]].tobytes() in taken:
        return None
    used = {W[group[0]].tobytes(), *taken}
    for parent in queue:
        for child in near[parent]:
            if child in seen:
                continue
            own, other = sel[W[parent, sel] == 1], sel[W[parent, sel] == 0]
            row = _best_unused_row(A[child], own, other, shared, k, used, W.shape[1])
            if row is None:
                return None
            W[child] = row
            used.add(row.tobytes())
            seen.add(child)
            queue.append(child)
    return W


def _best_unused_row(a, own, other, shared, k, used, n, tries: int = 200) -> np.ndarray | None:
    """A 0/1 row with ``shared`` of ``own`` and k − shared of ``other``, best by ``a``, not in ``used``."""
    if len(own) < shared or len(other) < k - shared:
        return None
    keeps = sorted(itertools.combinations(own.tolist(), shared), key=lambda s: -a[list(s)].sum())
    ranked = other[np.argsort(-a[other], kind="stable")]
    base, extra = ranked[:max(k - shared - 1, 0)], ranked[max(k - shared - 1, 0):]
    for keep in keeps[:tries]:
        for last in (extra if k > shared else [None]):
            row = np.zeros(n, dtype=W_DTYPE)
            row[list(keep)] = 1
            row[base] = 1
            if last is not None:
                row[last] = 1
            if row.tobytes() not in used:
                return row
    return None


def _fit_core(W, group, A, sel, k, shared) -> np.ndarray | None:
    """One core of ``shared`` features for the whole group, k − shared private features each."""
    if shared + len(group) * (k - shared) > len(sel):
        return None
    core = sel[np.argsort(-A[np.ix_(group, sel)].sum(0), kind="stable")[:shared]]
    rest = np.setdiff1d(sel, core)
    need = {c: k - shared for c in group}
    W[group] = 0
    W[np.ix_(group, core)] = 1
    used: set[int] = set()
    sub = A[np.ix_(group, rest)]
    for flat in np.argsort(-sub, axis=None, kind="stable"):  # best (class, feature) first
        c, j = group[flat // len(rest)], int(rest[flat % len(rest)])
        if need[c] and j not in used:
            W[c, j], need[c] = 1, need[c] - 1
            used.add(j)
    return W
