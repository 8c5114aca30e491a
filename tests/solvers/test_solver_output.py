"""A solve prints nothing: no solver banner reaches a notebook's output (a fresh process each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOLVE = """
import numpy as np
from companion.solvers.qpm import solve_assignment
rng = np.random.default_rng(0)
A, b = rng.normal(size=(4, 6)), rng.uniform(size=6)
R = np.triu(rng.uniform(size=(6, 6)), 1) * (rng.uniform(size=(6, 6)) > 0.7)
res = solve_assignment(A, R, b, n_features=4, per_class=2, solver={solver!r}, progress=False)
print("status", res.status)
"""


@pytest.mark.parametrize("solver", ["HIGHS", "SCIP"])
def test_an_exact_solve_prints_only_what_the_caller_prints(solver):
    done = subprocess.run([sys.executable, "-c", SOLVE.format(solver=solver)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.stdout.splitlines() == ["status optimal"], done.stdout
    assert "HiGHS" not in done.stderr and "SCIP" not in done.stderr, done.stderr
