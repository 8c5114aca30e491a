"""Benchmark: FLOPs and batch-1 wall-clock time of dense, VPP, later-layers-only and ToMe models.

Run ``python tests/benchmarks/bench_vpp.py [--repeats 30] [--threads 1]``. The four models are timed
interleaved (each round calls every model once, in rotating order) and the median is reported with
a bootstrap interval over rounds, so that load from other processes slows them alike. The chapter
prints the same table (``companion.vpp.benchmark.side_by_side``).
"""

import argparse

import torch

from companion.data.moving_shapes import make_moving_shapes
from companion.vpp.benchmark import side_by_side
from companion.vpp.pretrain import load_or_train
from companion.vpp.token_merging import TokenMergingSegmenter, merges_for_keep_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = load_or_train()
    c = models.dense.config
    clip = make_moving_shapes(n_videos=1, n_frames=4, image_size=c.image_size, seed=11).clip(0)["frames"]
    _, keep = models.vpp.run_clip(clip)
    r = merges_for_keep_ratio(float(keep[1:].mean()), c.num_tokens, c.depth)
    candidates = {"dense": models.dense, "VPP": models.vpp, "later-only (SViT-style)": models.svit,
                  f"ToMe (r={r})": TokenMergingSegmenter(models.dense, r)}
    print(side_by_side(candidates, clip[1:2], clip[2:3], repeats=args.repeats))


if __name__ == "__main__":
    main()
