"""Pretrain the USAM chapter's promptable segmenters (tiny, small, large) on ambiguous shapes.

The committed checkpoint ``companion/checkpoints/usam/segmenters.pt`` (1.6 MB) was made on a
CPU in about 20 minutes with::

    OMP_NUM_THREADS=1 python -m companion.models.usam_pretrain --seed 0

(the defaults of :class:`PretrainConfig`; torch 2.14.1). Retrain with the same command or with
``load_or_train_segmenters(path, retrain=True)``; other thread counts or devices give slightly
different weights.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.ambiguous_shapes import make_ambiguous_shapes
from ..data.prompts import centre_click
from ..runtime import resolve_device, seed_everything
from ..io import save_atomic
from ..train import fit
from .segmenter import SIZES, PromptableSegmenter, SegmenterConfig, create_segmenter, \
    segmentation_loss

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "usam" / "segmenters.pt"
FORMAT = "companion.usam.segmenters/1"


@dataclass(frozen=True)
class PretrainConfig:
    """What the committed checkpoint was trained with: the sizes differ only in capacity."""

    n_images: int = 2000
    epochs: dict[str, int] = field(default_factory=lambda: {"tiny": 8, "small": 8, "large": 8})
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    data_seed: int = 1000


def pretrain_segmenters(config: PretrainConfig = PretrainConfig(), *, device=None,
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
        fit(model, dataset, epochs=epochs, loss=segmentation_loss, optimizer="adamw",
            lr=config.lr, weight_decay=config.weight_decay, batch_size=config.batch_size,
            scheduler="cosine", seed=config.seed + i, device=device, progress=progress,
            desc=f"segmenter {size}")
        segmenters[size] = model.eval()
    return segmenters


def save_segmenters(segmenters: dict[str, PromptableSegmenter], path: str | os.PathLike,
                    config: PretrainConfig | None = None) -> Path:
    """Write every size's config and weights to one file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "pretrain": asdict(config) if config else None,
               "models": {k: {"config": asdict(m.config),
                              "state_dict": {n: t.detach().cpu() for n, t in
                                             m.state_dict().items()}}
                          for k, m in segmenters.items()}}
    save_atomic(payload, path)
    return path


def load_segmenters(path: str | os.PathLike = DEFAULT_CHECKPOINT, *,
                    device=None) -> dict[str, PromptableSegmenter]:
    """The segmenters saved by :func:`save_segmenters`, in eval mode, smallest first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No segmenter checkpoint at {path}: train one with "
                                "load_or_train_segmenters(path) or `python -m "
                                "companion.models.usam_pretrain`.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a segmenter checkpoint of format {FORMAT}; retrain it "
                         "with load_or_train_segmenters(path, retrain=True).")
    device = resolve_device(device)
    out = {}
    for name, entry in payload["models"].items():
        model = PromptableSegmenter(SegmenterConfig(**entry["config"]))
        model.load_state_dict(entry["state_dict"])
        out[name] = model.to(device).eval()
    return out


def load_or_train_segmenters(path: str | os.PathLike = DEFAULT_CHECKPOINT, *,
                             config: PretrainConfig = PretrainConfig(), retrain: bool = False,
                             device=None, progress: bool = True) -> dict[str, PromptableSegmenter]:
    """Load the checkpoint at ``path`` if present (and ``retrain`` is false), else train and save."""
    if Path(path).is_file() and not retrain:
        return load_segmenters(path, device=device)
    segmenters = pretrain_segmenters(config, device=device, progress=progress)
    save_segmenters(segmenters, path, config)
    return segmenters


def main(argv: list[str] | None = None) -> None:
    """Command line: train and save the segmenters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-images", type=int, default=PretrainConfig.n_images)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    config = PretrainConfig(n_images=args.n_images, seed=args.seed)
    save_segmenters(pretrain_segmenters(config, device=args.device), args.out, config)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
