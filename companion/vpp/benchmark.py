"""Side-by-side batch-1 benchmark of segmenters: FLOPs, operations, wall-clock time, speed-up.

The chapter and ``tests/benchmarks/bench_vpp.py`` print the same table from :func:`side_by_side`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..metrics.bootstrap import Interval
from ..metrics.efficiency import (
    Timing,
    count_flops,
    count_operations,
    speedup_interval,
    time_interleaved,
)
from ..tables import Table


@dataclass(frozen=True)
class SideBySide:
    """FLOPs, timings and speed-ups over the first model, all from one interleaved run."""

    flops: dict[str, int]
    operations: dict[str, int]    # tensor operations dispatched per frame
    timing: dict[str, Timing]
    speedup: dict[str, Interval]  # median(first) / median(model), bootstrap over rounds

    def table(self) -> Table:
        return Table.of(
            ["model", "MFLOPs", "ops", "median ms", "IQR ms", "speed-up [95 %]"],
            [[name, f"{self.flops[name] / 1e6:.1f}", str(self.operations[name]),
              f"{t.median * 1e3:.2f}",
              f"{t.q25 * 1e3:.2f}–{t.q75 * 1e3:.2f}",
              f"{self.speedup[name].estimate:.2f}× [{self.speedup[name].low:.2f}, "
              f"{self.speedup[name].high:.2f}]"] for name, t in self.timing.items()])

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table())


def side_by_side(models: Mapping[str, object], previous: torch.Tensor, frame: torch.Tensor, *,
                 repeats: int = 30, n_boot: int = 1000) -> SideBySide:
    """Time ``models`` (name → a model with ``frame_call``; the first is the baseline) at batch 1
    on ``frame`` (1, 3, H, W) with the prior of ``previous``, called in rotating order each
    round; count their FLOPs and tensor operations on the same call."""
    if len(models) < 2:
        raise ValueError(f"Compare at least two models (the first is the baseline), got "
                         f"{len(models)}.")
    calls = {name: m.frame_call(previous, frame) for name, m in models.items()}
    flops = {name: count_flops(fn) for name, fn in calls.items()}
    operations = {name: count_operations(fn) for name, fn in calls.items()}
    timing = time_interleaved(calls, repeats=repeats, progress=False)
    base = timing[next(iter(calls))]
    speedup = {name: speedup_interval(base, t, n_boot=n_boot) for name, t in timing.items()}
    return SideBySide(flops, operations, timing, speedup)
