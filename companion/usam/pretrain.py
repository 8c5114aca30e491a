"""Pretrain UncertainSAM's promptable segmenters (tiny, small, large) on ambiguous shapes.

The committed checkpoint ``companion/usam/checkpoints/segmenters.pt`` (1.6 MB) was made on a
CPU in 345 CPU-seconds on one thread (tiny and small 148 s, large 197 s; the checkpoint records
it, see :func:`training_cpu_seconds`) with::

    OMP_NUM_THREADS=1 python -m companion.usam.pretrain --seed 0

(the defaults of :class:`PretrainConfig`; torch 2.14.1). Each size is seeded on its own
(``seed + i``), so the committed file was trained as two processes at once, tiny and small in one,
large in the other with ``seed=2``; on one thread that gives the same weights as the command
(checked for tiny and small). Retrain with it or with
``load_or_train(path, retrain=True)``; other thread counts or devices give slightly different
weights.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import load_weights, read_checkpoint, write_checkpoint
from ..data.ambiguous_shapes import make_ambiguous_shapes
from ..data.prompts import centre_click
from ..metrics.segmentation import mask_iou
from ..runtime import resolve_device, seed_everything
from ..train import fit
from .segmenter import NOT_A_POINT, SIZES, PromptableSegmenter, PromptableSegmenterConfig, create_segmenter

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "segmenters.pt"
FORMAT = "companion.usam.segmenters/1"
REMEDY = ("retrain it with companion.usam.pretrain.load_or_train(path, retrain=True) or "
          "`python -m companion.usam.pretrain`")


@dataclass(frozen=True)
class PretrainConfig:
    """What the committed checkpoint was trained with: the sizes differ only in capacity."""

    n_images: int = 2000
    epochs: dict[str, int] = field(default_factory=lambda: {"tiny": 14, "small": 14, "large": 16})
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    iou_weight: float = 5.0  # weight of the score head's MSE next to BCE + Dice
    seed: int = 0
    data_seed: int = 1000


def training_prompts(masks: torch.Tensor, centre: torch.Tensor, max_points: int = 8,
                     p_single: float = 0.5, p_centre: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Random foreground clicks for training: 1 click with probability ``p_single``, else 2…8.

    The first click is the centre click with probability ``p_centre``; unused slots are padding.
    Returns points (B, max_points, 2) and labels (B, max_points).
    """
    b, h, w = masks.shape
    flat = torch.multinomial(masks.flatten(1).float() + 1e-12, max_points, replacement=True)
    points = torch.stack([flat % w, flat // w], dim=-1).float()
    use_centre = torch.rand(b, device=masks.device) < p_centre
    points[:, 0] = torch.where(use_centre[:, None], centre.float(), points[:, 0])
    n = torch.where(torch.rand(b, device=masks.device) < p_single,
                    torch.ones(b, dtype=torch.long, device=masks.device),
                    torch.randint(2, max_points + 1, (b,), device=masks.device))
    labels = (torch.arange(max_points, device=masks.device)[None] < n[:, None]).long()
    return points, torch.where(labels.bool(), labels, torch.full_like(labels, NOT_A_POINT))


def multimask_loss(model: PromptableSegmenter, batch, iou_weight: float = 1.0
                   ) -> tuple[torch.Tensor, dict]:
    """SAM's multi-mask loss: BCE + Dice of the best of the three masks, plus MSE on the IoUs.

    ``batch`` is (images, masks, centre clicks); prompts are drawn by ``training_prompts``.
    """
    images, masks, centre = batch
    points, labels = training_prompts(masks, centre)
    out = model(images, points, labels)
    target = masks[:, None].expand_as(out.mask_logits)
    bce = F.binary_cross_entropy_with_logits(out.mask_logits, target, reduction="none").mean((-2, -1))
    prob = out.mask_logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((-2, -1)) + 1) / (prob.sum((-2, -1)) + target.sum((-2, -1)) + 1)
    per_mask = bce + dice
    best = per_mask.argmin(1)
    iou = mask_iou(out.mask_logits.detach() > 0, target)
    loss = per_mask.gather(1, best[:, None]).mean() + iou_weight * F.mse_loss(out.scores, iou)
    return loss, {"best_iou": iou.max(1).values.mean().item()}


def pretrain(config: PretrainConfig = PretrainConfig(), *, device=None,
             progress: bool = True) -> dict[str, PromptableSegmenter]:
    """Train one segmenter per size in ``config.epochs`` with SAM's multi-mask loss (seeded)."""
    unknown = set(config.epochs) - set(SIZES)
    if unknown:
        raise ValueError(f"Unknown sizes {sorted(unknown)}: choose from {', '.join(SIZES)}.")
    data = make_ambiguous_shapes(config.n_images, seed=config.data_seed, progress=progress)
    dataset = data.dataset({"centre": centre_click(data.masks)})
    segmenters = {}
    for i, (size, epochs) in enumerate(config.epochs.items()):
        seed_everything(config.seed + i)
        model = create_segmenter(size, device=device)
        fit(model, dataset, epochs=epochs,
            loss=functools.partial(multimask_loss, iou_weight=config.iou_weight), optimizer="adamw",
            lr=config.lr, weight_decay=config.weight_decay, batch_size=config.batch_size,
            scheduler="cosine", seed=config.seed + i, device=device, progress=progress,
            desc=f"segmenter {size}")
        segmenters[size] = model.eval()
    return segmenters


def save(segmenters: dict[str, PromptableSegmenter], path: str | os.PathLike = CHECKPOINT,
         config: PretrainConfig | None = None, cpu_seconds: float | None = None) -> Path:
    """Write every size's config and weights to one file, atomically (and the training's CPU time)."""
    models = {k: {"config": asdict(m.config),
                  "state_dict": {n: t.detach().cpu() for n, t in m.state_dict().items()}}
              for k, m in segmenters.items()}
    return write_checkpoint({"pretrain": asdict(config) if config else None, "models": models,
                             "cpu_seconds": cpu_seconds}, path, FORMAT)


def training_cpu_seconds(path: str | os.PathLike = CHECKPOINT) -> float | None:
    """The CPU time (user + system, all threads) the checkpoint's training took, if recorded."""
    return read_checkpoint(path, FORMAT, REMEDY).get("cpu_seconds")


def load(path: str | os.PathLike = CHECKPOINT, *, device=None) -> dict[str, PromptableSegmenter]:
    """The segmenters saved by :func:`save`, in eval mode, smallest first."""
    payload = read_checkpoint(path, FORMAT, REMEDY)
    device = resolve_device(device)
    out = {}
    for name, entry in payload["models"].items():
        model = PromptableSegmenter(PromptableSegmenterConfig(**entry["config"]))
        out[name] = load_weights(model, entry["state_dict"], path, REMEDY).to(device).eval()
    return out


def load_or_train(path: str | os.PathLike = CHECKPOINT, *,
                  config: PretrainConfig = PretrainConfig(), retrain: bool = False, device=None,
                  progress: bool = True) -> dict[str, PromptableSegmenter]:
    """Load the checkpoint at ``path`` if present (and ``retrain`` is false), else train and save."""
    if Path(path).is_file() and not retrain:
        return load(path, device=device)
    segmenters = pretrain(config, device=device, progress=progress)
    save(segmenters, path, config)
    return segmenters


def main(argv: list[str] | None = None) -> None:
    """Command line: train and save the segmenters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-images", type=int, default=PretrainConfig.n_images)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    config = PretrainConfig(n_images=args.n_images, seed=args.seed)
    start = time.process_time()
    segmenters = pretrain(config, device=args.device)
    save(segmenters, args.out, config, cpu_seconds=time.process_time() - start)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
