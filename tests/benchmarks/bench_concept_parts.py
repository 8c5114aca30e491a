"""Benchmark: time and memory to generate the concept-parts dataset.

Run with ``python tests/benchmarks/bench_concept_parts.py``; prints one row per configuration
(best of three runs, torch limited to two threads as on the book's CI machines).
"""

from __future__ import annotations

import time

import torch

from companion.data.concept_parts import make_concept_parts

CONFIGS = [
    {"n_images": 2000, "image_size": 64},
    {"n_images": 5000, "image_size": 64},
    {"n_images": 5000, "image_size": 64, "noise": 0.0},
    {"n_images": 5000, "image_size": 32},
    {"n_images": 2000, "image_size": 128, "grid": 4},
]


def main() -> None:
    torch.set_num_threads(2)
    print(f"{'images':>7} {'size':>5} {'noise':>6} {'seconds':>8} {'images/s':>9} {'MB':>7}")
    for config in CONFIGS:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            data = make_concept_parts(**config)
            times.append(time.perf_counter() - start)
        best = min(times)
        megabytes = (data.images.nbytes + data.part_map.nbytes) / 2**20
        print(f"{config['n_images']:>7} {config['image_size']:>5} {config.get('noise', 0.02):>6} "
              f"{best:>8.2f} {config['n_images'] / best:>9.0f} {megabytes:>7.0f}")


if __name__ == "__main__":
    main()
