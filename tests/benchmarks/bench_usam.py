"""Cost per image of the USAM heads and of the Monte-Carlo baselines (the paper's Table 7).

Run: python tests/benchmarks/bench_usam.py [--repeats 50] [--size small]
"""

import argparse

import torch

from companion.data.ambiguous_shapes import make_ambiguous_shapes
from companion.data.prompts import sample_prompts
from companion.usam.costs import method_costs
from companion.usam.heads import USAMHeads
from companion.usam.pretrain import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--size", default="small")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    segmenters = load(device=args.device)
    data = make_ambiguous_shapes(4, seed=0, progress=False)
    prompts = sample_prompts(data.masks, 8, seed=0)
    names = ("iou_tiny", "iou_small", "iou_large", "iou_sam", "iou_dense", "model_gap",
             "prompt_gap", "task_gap")
    heads = USAMHeads(names, segmenters[args.size].config.embed_dim)
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}, size: {args.size}")
    rows = []
    for i in range(len(data)):
        costs = method_costs(segmenters, heads, data.images[data.image_index[i]], prompts.dense[i],
                             args.size, repeats=args.repeats, device=args.device)
        rows.append(costs)
    print("| method | ms per image | × forward |\n|---|---|---|")
    for name in rows[0]:
        ms = sorted(r[name] for r in rows)[len(rows) // 2] * 1000
        base = sorted(r["segmenter"] for r in rows)[len(rows) // 2] * 1000
        print(f"| {name} | {ms:.3f} | {ms / base:.3f} |")


if __name__ == "__main__":
    main()
