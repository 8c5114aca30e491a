"""CHiQPM's forced sharing: chosen class pairs share exactly ``shared`` (k − 1) features."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from .extension import ModelVariables, QPMExtension
from .heuristic import subsets_by_value

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

        if not self.pairs:
            return []
        shared = self._shared(model.per_class)
        z, cons = _pair_products(model, self.pairs)
        return cons + [cp.sum(z, axis=1) == shared]

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

        Block by block of the group's pair graph (:func:`_fit_blocks`): a pair on no cycle gets
        the child's best ``shared`` features of its parent's row plus its best others; the
        classes of a cycle share one core of ``shared`` features and differ in private ones.
        """
        W = np.array(assignment, dtype=np.int8)
        A = np.asarray(similarity, dtype=float)
        sel = np.asarray(selected)
        k = int(W[0].sum())
        shared = self._shared(k)
        taken: set[bytes] = set()  # rows of the groups fitted so far: frozen, so keep them unique
        for group, pairs in self._groups():
            W = _fit_blocks(W, group, pairs, A, sel, k, shared, taken)
            if W is None:
                return None
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
    this) is where the solver starts (``start``).
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
        z, products = _pair_products(model, self.pairs)
        return cons + products + [cp.sum(z, axis=1) >= shared * keep, cp.sum(keep) >= self.target]

    def check(self, assignment: np.ndarray, selected: np.ndarray) -> None:
        W = np.asarray(assignment)
        if not np.array_equal(np.sort(np.asarray(selected)), self.selection):
            raise ValueError("Idealised sharing violated: the selection differs from the fixed one.")
        shared = self.sharing._shared(int(W[0].sum()) if len(W) else 0)
        kept = sum(int(W[a] @ W[b]) >= shared for a, b in self.pairs)
        if kept < self.target:
            raise ValueError(f"Idealised sharing violated: {kept} of the pairs share {shared} "
                             f"features, at least {self.target} must.")

    def start(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The forced solution on the fixed selection: the solve's first incumbent."""
        return None if self.fallback is None else (self.fallback.copy(), self.selection.copy())


def _pair_products(model: ModelVariables, pairs: list[tuple[int, int]]) -> tuple:
    """z (pairs × candidates) with z_pj = W_aj · W_bj on binary rows, and its linear constraints."""
    import cvxpy as cp

    wa, wb = model.rows([a for a, _ in pairs]), model.rows([b for _, b in pairs])
    z = cp.Variable(wa.shape, nonneg=True)
    return z, [z <= wa, z <= wb, z >= wa + wb - 1]


def _fit_blocks(W, group, pairs, A, sel, k, shared, taken=frozenset()) -> np.ndarray | None:
    """The group's rows refitted block by block of its pair graph, so every pair shares ``shared``.

    The pair graph splits into biconnected blocks that meet in single classes (a pair on no
    cycle is a block of two). The group's first class keeps its row (its best unused one if that
    is in ``taken``). Blocks are then fitted outward: a block is entered through the one class of
    it already fitted; its core is ``shared`` of that class's features, and each other member
    gets the core plus k − shared private features, its best ones among those neither the entry
    class nor another member holds, so every two rows of the block share exactly the core. The
    block's best core comes first; the next is tried where rows run out. Rows stay unique against
    ``taken``. None where no core leaves enough rows.
    """
    import networkx as nx

    W, used, root = W.copy(), set(taken), group[0]
    if W[root].tobytes() in used:
        best_first = (_row(sel[list(subset)], W.shape[1])
                      for subset, _ in subsets_by_value(A[root, sel], k))
        row = next((row for row in best_first if row.tobytes() not in used), None)
        if row is None:
            return None
        W[root] = row
    used.add(W[root].tobytes())
    fitted = {root}
    pending = [set(block) for block in nx.biconnected_components(nx.Graph(pairs))]
    while pending:
        block = next(b for b in pending if b & fitted)  # one fitted class: the blocks form a tree
        pending.remove(block)
        (entry,) = block & fitted
        members = [c for c in group if c in block and c != entry]
        own = sel[W[entry, sel] == 1]
        cores = sorted(itertools.combinations(own.tolist(), shared),
                       key=lambda core: -A[np.ix_(members, list(core))].sum())
        for core in cores:
            rows = _block_rows(A, members, list(core), set(sel[W[entry, sel] == 0].tolist()),
                               k - shared, used, W.shape[1])
            if rows is not None:
                break
        else:
            return None
        for c, row in zip(members, rows, strict=True):
            W[c] = row
            used.add(row.tobytes())
        fitted |= block
    return W


def _block_rows(A, members, core, free, n_private, used, n) -> list[np.ndarray] | None:
    """Rows ``core`` + ``n_private`` features of ``free`` for each member, disjoint beyond the core."""
    rows, free, used = [], set(free), set(used)
    for c in members:
        ranked = [j for j in np.argsort(-A[c], kind="stable").tolist() if j in free]
        if len(ranked) < n_private:
            return None
        base = ranked[:n_private - 1]
        tails = [[j] for j in ranked[n_private - 1:]] if n_private else [[]]
        row = next((r for r in (_row(core + base + t, n) for t in tails)
                    if r.tobytes() not in used), None)
        if row is None:
            return None
        rows.append(row)
        used.add(row.tobytes())
        free -= set(np.flatnonzero(row).tolist())
    return rows


def _row(features, n: int) -> np.ndarray:
    """The 0/1 row (length n) that holds ``features``."""
    row = np.zeros(n, dtype=W_DTYPE)
    row[list(features)] = 1
    return row
