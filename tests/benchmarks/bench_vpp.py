"""Benchmark: FLOPs and batch-1 wall-clock time of dense, VPP, later-layers-only and ToMe models.

Run ``python tests/benchmarks/bench_vpp.py [--repeats 30] [--threads 1]``. The four models are timed
interleaved (each round calls every model once, in rotating order) and the median is reported,
so that load from other processes slows them alike.
"""

import argparse

import torch

from companion.data.moving_shapes import make_moving_shapes
from companion.metrics.efficiency import count_flops, time_interleaved
from companion.vpp.pretrain import load_or_train
from companion.vpp.token_merging import TokenMergingSegmenter, merges_for_keep_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = load_or_train()
    clip = make_moving_shapes(n_videos=1, n_frames=4, seed=11).clip(0)["frames"]
    c = models.dense.config
    _, keep = models.vpp.run_clip(clip)
    r = merges_for_keep_ratio(float(keep[1:].mean()), c.num_tokens, c.depth)
    candidates = {"dense": models.dense, "VPP": models.vpp, "later-only (SViT-style)": models.svit,
                  f"ToMe (r={r})": TokenMergingSegmenter(models.dense, r)}
    calls = {name: m.frame_call(clip[1:2], clip[2:3]) for name, m in candidates.items()}
    flops = {name: count_flops(fn) for name, fn in calls.items()}
    timing = time_interleaved(calls, repeats=args.repeats)
    base = timing["dense"].median
    print(f"{'model':28s} {'MFLOPs':>8s} {'median ms':>10s} {'IQR ms':>14s} {'speed-up':>9s}")
    for name in calls:
        t = timing[name]
        print(f"{name:28s} {flops[name] / 1e6:8.1f} {t.median * 1e3:10.2f} "
              f"{t.q25 * 1e3:6.2f}–{t.q75 * 1e3:6.2f} {base / t.median:8.2f}×")


if __name__ == "__main__":
    main()
