"""Efficiency measures: kept-token ratio per layer, FLOPs counted by torch, wall-clock time."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..progress import tqdm
from ..runtime import resolve_device
from .bootstrap import Interval, bootstrap_interval


def keep_ratio_per_layer(keep: torch.Tensor) -> torch.Tensor:
    """Fraction of tokens each block processed, averaged over frames: (..., depth, N) → (depth,)."""
    if keep.ndim < 2:
        raise ValueError(f"keep must be (..., depth, N), got shape {tuple(keep.shape)}.")
    return keep.detach().float().reshape(-1, *keep.shape[-2:]).mean(dim=(0, 2))


def patch_keep_ratio(keep: torch.Tensor) -> float:
    """Patch keep ratio (PKR): mean over blocks of the kept fraction, as the paper logs it."""
    return float(keep_ratio_per_layer(keep).mean())


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _encoder_layer_flops(src_shape, embed_dim, num_heads, qkv_weight_shape, *args,
                         out_shape=None, **kwargs) -> int:
    """A fused pre-norm encoder layer: qkv, projection, two MLP layers and attention."""
    *batch, n, d = src_shape
    tokens = math.prod(batch) * n
    hidden = args[11][0]  # ffn_weight_1 (hidden, d)
    linear = 2 * tokens * (qkv_weight_shape[0] * d + d * d + 2 * d * hidden)
    return linear + 4 * tokens * n * d


# torch's counter knows the CUDA attention kernels; the CPU kernel needs the same formula, and
# the fused encoder layer (companion.vpp.vit.Block at inference) one of its own.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
                   torch.ops.aten._transformer_encoder_layer_fwd: _encoder_layer_flops}


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` as counted by ``FlopCounterMode``.

    A multiply-add counts as 2 FLOPs; matrix products, convolutions and attention (also the CPU
    attention kernel) are counted, element-wise operations are not.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.no_grad(), counter:
        fn()
    return int(counter.get_total_flops())


class _OperationCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_operations(fn: Callable[[], object]) -> int:
    """Tensor operations (ATen calls, views included) that one call of ``fn`` dispatches.

    Each costs a fixed time besides its arithmetic (dispatch, allocation), so on small tensors
    the count, not the FLOPs, sets the time.
    """
    counter = _OperationCounter()
    with torch.no_grad(), counter:
        fn()
    return counter.count


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls: median and quartiles over ``repeats`` samples."""

    median: float
    q25: float
    q75: float
    repeats: int
    samples: tuple[float, ...] = field(default=(), repr=False)  # seconds per round, in order


def speedup_interval(base: Timing, other: Timing, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> Interval:
    """Bootstrap interval of the speed-up median(base) / median(other) of two functions timed
    side by side by :func:`time_interleaved`: a resample draws whole rounds, both functions'
    times of a round together, so that load shared by a round cancels."""
    if len(base.samples) != len(other.samples) or len(base.samples) < 2:
        raise ValueError(f"Need two timings of the same rounds (at least 2) from time_interleaved, "
                         f"got {len(base.samples)} and {len(other.samples)} samples.")
    a, b = np.asarray(base.samples), np.asarray(other.samples)
    return bootstrap_interval(lambda r: float(np.median(a[r]) / np.median(b[r])), len(a),
                              n_boot=n_boot, level=level, seed=seed)


def _synchronize(device: torch.device) -> Callable[[], None]:
    """A call that waits for the device's queued kernels (CUDA runs them asynchronously)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_interleaved(fns: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 3,
                     progress: bool = True, device=None) -> dict[str, Timing]:
    """Time several functions side by side: each round calls every function once, in rotating
    order, so that a busy machine slows them all alike; report the median per function.

    Calls run under ``torch.inference_mode``, as a deployed model does (no autograd bookkeeping
    per operation, which on small tensors is a part of each operation's fixed cost). On a CUDA
    ``device`` (default: the profile's) each call is timed from a synchronised start to the end
    of its kernels, not to the end of their launch.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    sync = _synchronize(resolve_device(device))
    names = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                fns[n]()
        sync()
        for r in tqdm(range(repeats), desc="timing", disable=not progress, leave=False):
            for n in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                fns[n]()
                sync()
                samples[n].append(time.perf_counter() - start)
    out = {}
    for n, s in samples.items():
        q = statistics.quantiles(s, n=4) if len(s) > 1 else [s[0]] * 3
        out[n] = Timing(statistics.median(s), q[0], q[2], len(s), tuple(s))
    return out
