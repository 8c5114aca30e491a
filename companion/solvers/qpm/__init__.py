"""QPM's class–feature assignment: choose n_f of N features and give every class k of them.

The binary program of QPM (eqs. 1–7 of the paper), in the reduced linear form used here::

    max  Σ_cj A_cj W_cj + Σ_j b_j s_j − λ Σ_{i<j} R_ij s_i s_j           (Z_A + Z_B − λ Z_R)
    s.t. W_cj ≤ s_j,  Σ_j W_cj = k  for every class c,  Σ_j s_j = n_f,
         no two rows of W equal,  W ∈ {0,1}^{C×N},  s ∈ {0,1}^N.

Once ``s`` is fixed, each class simply takes its k most similar selected features, so only ``s``
must branch: ``W`` is continuous in the MILP (its polytope is integral for fixed ``s``) except for
the classes that carry a uniqueness cut. Products ``s_i s_j`` are linearised (``y_ij ≥ s_i + s_j − 1``,
plus triangle inequalities) only for the penalised pairs (``R_ij > 0``). Uniqueness is added lazily,
as in the paper: when two classes get the same signature, the pair gets the constraint "c1 uses a
feature that c2 does not" (``Σ_j d_j ≥ 1``, ``d_j ≤ W_c1j``, ``d_j ≤ 1 − W_c2j``) and the model is
solved again. A Lagrangian bound (which also relaxes the pair penalty, except for the part of it
inside disjoint cliques of penalised features, which it keeps exactly) gives safe candidate
pre-filtering (reduced-cost fixing) and a bound for the heuristic; a greedy/swap heuristic with an
iterated swap search gives the incumbent, which is HiGHS's cutoff and sets each class's starting
window. Every round's relaxation
bounds the candidate problem, so the loop stops as soon as the gap is closed.

Modules: ``problem`` (input checks, result, objective, constraint check), ``heuristic``
(greedy/swap/iterated swap/dedup), ``bound`` (penalty cliques, Lagrangian bound, candidate
filtering), ``model`` (the MILP in
cvxpy), ``solve`` (the lazy loop), ``extension`` (the hook for extra constraints) and ``sharing``
(CHiQPM's forced sharing, built on that hook).
"""

from .bound import lagrangian_bound
from .extension import ModelVariables, QPMExtension
from .problem import (
                      SOLVERS,
                      AssignmentResult,
                      NotProvenOptimalWarning,
                      assignment_objective,
                      check_assignment,
)
from .sharing import ForcedSharing, IdealisedSharing
from .solve import solve_assignment

__all__ = ["SOLVERS", "AssignmentResult", "ForcedSharing", "IdealisedSharing", "ModelVariables",
           "NotProvenOptimalWarning", "QPMExtension", "assignment_objective", "check_assignment",
           "lagrangian_bound", "solve_assignment"]
