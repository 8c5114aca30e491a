"""Tests of the efficiency measures: keep ratios, FLOP counts against the analytic count, timing."""

import types

import pytest
import torch

from companion.metrics import efficiency
from companion.metrics.efficiency import (
    Timing,
    count_flops,
    count_operations,
    keep_ratio_per_layer,
    patch_keep_ratio,
    speedup_interval,
    time_interleaved,
)
from companion.vpp.vit import Block


def test_keep_ratio_per_layer_and_pkr():
    keep = torch.zeros(2, 3, 4)
    keep[:, 0] = 1
    keep[0, 1, :2] = 1
    assert keep_ratio_per_layer(keep).tolist() == [1.0, 0.25, 0.0]
    assert patch_keep_ratio(keep) == pytest.approx(1.25 / 3)
    with pytest.raises(ValueError):
        keep_ratio_per_layer(torch.ones(3))


@pytest.mark.parametrize("n", [16, 40])
def test_block_flops_match_the_analytic_count(n):
    d = 32
    block = Block(d, 4)
    x = torch.randn(1, n, d)
    linear = 2 * n * d * (3 * d + d + 4 * d + 4 * d)   # qkv, proj, fc1, fc2
    attention = 2 * 2 * n * n * d                      # QKᵀ and AV
    assert count_flops(lambda: block(x)) == linear + attention


def test_operations_are_counted_one_per_call():
    x = torch.randn(4, 8)
    assert count_operations(lambda: (x + 1) * 2) == 2
    assert count_operations(lambda: x.t().sum()) == 2
    block, tokens = Block(8, 2).eval(), x[None]  # at inference one fused kernel
    assert count_operations(lambda: block(tokens)) == 1
    assert count_operations(lambda: block.feed_forward(block.attend(tokens))) > 10


@pytest.fixture
def fake_clock(monkeypatch):
    """A clock that only the timed functions advance (no wall-clock in a test): a call of
    ``fake_clock(low, high)`` takes between low and high units, varying from call to call."""
    clock = {"now": 0.0, "calls": 0}

    def advance(low, high):
        clock["calls"] += 1
        clock["now"] += low + (high - low) * (clock["calls"] * 0.37 % 1)

    monkeypatch.setattr(efficiency, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    return advance


def test_interleaved_timing_orders_slow_and_fast_calls(fake_clock):
    out = time_interleaved({"fast": lambda: fake_clock(1.0, 1.5), "slow": lambda: fake_clock(6.0, 6.5)},
                           repeats=5, warmup=1, progress=False)
    assert 1.0 <= out["fast"].median <= 1.5 and 6.0 <= out["slow"].median <= 6.5
    assert out["slow"].median > out["fast"].median
    assert out["fast"].q25 <= out["fast"].median <= out["fast"].q75 and out["fast"].repeats == 5
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, repeats=0)


@pytest.mark.parametrize("device, per_call", [("cuda", 1), ("cpu", 0)])
def test_timing_waits_for_cuda_kernels(monkeypatch, device, per_call):
    """On CUDA every timed call ends with a synchronize (else it measures kernel launches)."""
    synced = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: synced.append(d))
    calls = []
    time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                     repeats=4, warmup=1, progress=False, device=device)
    timed = len(calls) - 2  # the warm-up round ends with a single synchronize
    assert len(synced) == per_call * (timed + 1)
    assert all(d == torch.device(device) for d in synced)


def test_speedup_interval_bootstraps_paired_rounds(fake_clock):
    base = Timing(0.0, 0.0, 0.0, 4, (4.0, 4.0, 8.0, 4.0))
    other = Timing(0.0, 0.0, 0.0, 4, (2.0, 2.0, 4.0, 2.0))  # always twice as fast
    iv = speedup_interval(base, other, n_boot=50)
    assert (iv.estimate, iv.low, iv.high) == (2.0, 2.0, 2.0)
    out = time_interleaved({"fast": lambda: fake_clock(1.0, 1.5), "slow": lambda: fake_clock(3.0, 5.0)},
                           repeats=8, warmup=0, progress=False)
    assert len(out["fast"].samples) == 8
    iv = speedup_interval(out["slow"], out["fast"], n_boot=50)
    assert 1.0 < iv.low <= iv.estimate <= iv.high
    with pytest.raises(ValueError, match="same rounds"):
        speedup_interval(base, Timing(0.0, 0.0, 0.0, 1, (1.0,)))
