"""Pretrain the smoke world's frozen ViT, supervised on concept-parts classes disjoint from the chapter's.

Why supervised: a frozen foundation model needs real pretraining, and no DINOv2 weights can be
downloaded here. Two label-free objectives were measured first on concept-parts images
(``research/feasibility.md``): DINO self-distillation (390 s) and SimSiam (300 s) reached 0.875
and 0.892 with a linear probe on pooled tokens and 0.598 and 0.609 with k-NN, against 0.879 and
0.675 for the same ViT with random weights: neither beat random weights. So this script trains
with the labels of *other* classes (same part vocabulary, different part sets, different seed):
a transfer stand-in for self-supervised pretraining, which the chapter says plainly.

The committed checkpoint ``companion/foundation/checkpoints/vit_smoke.pt`` (about 1 MB, half
precision) was made on one CPU thread, in 272 CPU-seconds (10 epochs of 10,000 images), with::

    OMP_NUM_THREADS=1 python -m companion.foundation.pretrain --seed 0

On the chapter's data (64 px, 2,000 / 1,000 images) its tokens beat the same ViT with random
weights on every probe: average-pooled tokens 0.931 / 0.877 / 0.911 (linear / 10-shot / 20-NN)
against 0.904 / 0.591 / 0.619, raw pixels 0.873 / 0.257 / 0.307 (the chapter prints them).

:func:`load_or_train` loads it when present and trains the same ViT otherwise.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ..checkpoint import load_weights, read_checkpoint, write_checkpoint
from ..classify.dino_qpm import FrozenViT, frozen_vit
from ..data.concept_parts import make_concept_parts
from ..runtime import seed_everything
from ..train import History, fit

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "vit_smoke.pt"
FORMAT = "companion.foundation.vit/1"
REMEDY = ("retrain it with companion.foundation.pretrain.load_or_train(path, retrain=True) or "
          "`python -m companion.foundation.pretrain`")
VIT = "timm:vit_tiny_patch16_224"  # the architecture, resized by the config (no weights used)


@dataclass(frozen=True)
class PretrainConfig:
    """The ViT and its pretraining data: classes of ``data_seed``, minus any class of the chapter."""

    image_size: int = 64
    patch_size: int = 8
    dim: int = 96
    depth: int = 4
    heads: int = 4
    n_images: int = 10_000
    n_classes: int = 24
    siblings: int = 6
    data_seed: int = 1234
    exclude_seed: int = 0       # the chapter's data: seed 0, 10 classes
    exclude_classes: int = 10
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 64


def build_vit(config: PretrainConfig = PretrainConfig()) -> FrozenViT:
    """The ViT of ``config`` with random weights (seed it first), frozen."""
    return frozen_vit(VIT, image_size=config.image_size, pretrained=False,
                      patch_size=config.patch_size, embed_dim=config.dim, depth=config.depth,
                      num_heads=config.heads)


def disjoint_classes(candidates: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """Which rows of ``candidates`` (C × P part sets) equal no row of ``excluded`` (bool mask)."""
    same = (candidates[:, None, :] == excluded[None, :, :]).all(dim=2)
    return ~same.any(dim=1)


def pretraining_data(config: PretrainConfig = PretrainConfig()) -> TensorDataset:
    """Concept-parts images of classes disjoint from the chapter's, relabelled 0..C'-1."""
    parts = make_concept_parts(config.n_images, image_size=config.image_size,
                               n_classes=config.n_classes, siblings=config.siblings,
                               seed=config.data_seed)
    chapter = make_concept_parts(config.exclude_classes, image_size=config.image_size,
                                 n_classes=config.exclude_classes, seed=config.exclude_seed)
    keep = disjoint_classes(parts.class_parts, chapter.class_parts)
    new_label = torch.cumsum(keep.long(), 0) - 1
    chosen = keep[parts.labels]
    return TensorDataset(parts.images[chosen], new_label[parts.labels[chosen]])


class _Pretrainer(nn.Module):
    """The ViT with two linear heads, on the CLS token and on the average patch token."""

    def __init__(self, vit: FrozenViT, n_classes: int):
        super().__init__()
        self.model = vit.vit.model
        self.prefix = self.model.num_prefix_tokens
        self.on_cls = nn.Linear(vit.num_features, n_classes)
        self.on_tokens = nn.Linear(vit.num_features, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.forward_features(x)
        return self.on_cls(out[:, 0]), self.on_tokens(out[:, self.prefix:].mean(1))


def _loss(model: _Pretrainer, batch: tuple) -> tuple[torch.Tensor, dict]:
    x, y = batch
    if torch.rand(()) < 0.5:  # horizontal flips: the parts' classes do not depend on side
        x = x.flip(-1)
    cls, tokens = model(x)
    loss = F.cross_entropy(cls, y) + F.cross_entropy(tokens, y)
    return loss, {"accuracy": (tokens.argmax(1) == y).float().mean().item()}


def pretrain(config: PretrainConfig = PretrainConfig(), seed: int = 0, device=None,
             progress: bool = True) -> tuple[FrozenViT, History]:
    """Train the ViT (AdamW, cosine schedule) on the disjoint classes; returns it frozen."""
    seed_everything(seed)
    vit = build_vit(config)
    data = pretraining_data(config)
    n_classes = int(data.tensors[1].max()) + 1
    trainer = _Pretrainer(vit, n_classes)
    trainer.requires_grad_(True)
    trainer.train()
    history = fit(trainer, data, epochs=config.epochs, loss=_loss, optimizer="adamw", lr=config.lr,
                  weight_decay=config.weight_decay, batch_size=config.batch_size,
                  scheduler="cosine", grad_clip=1.0, seed=seed, device=device, progress=progress,
                  desc="pretrain ViT")
    vit.cpu().requires_grad_(False)
    return vit.eval(), history


def save(vit: FrozenViT, history: History, config: PretrainConfig, seed: int,
         path: str | os.PathLike = CHECKPOINT, seconds: float | None = None) -> Path:
    """Write the ViT's weights in half precision, with its config, seed and history."""
    half = {n: t.half() if t.is_floating_point() else t for n, t in vit.state_dict().items()}
    return write_checkpoint({"config": asdict(config), "seed": seed, "vit": half,
                             "history": history.to_dict(), "seconds": seconds}, path, FORMAT)


@dataclass(frozen=True)
class Pretrained:
    """The frozen ViT, its config and seed, and how its pretraining went."""

    vit: FrozenViT
    config: PretrainConfig
    seed: int
    history: History
    seconds: float | None = None


def load(path: str | os.PathLike = CHECKPOINT) -> Pretrained:
    """The ViT written by :func:`save` (float32, frozen, on the CPU)."""
    state = read_checkpoint(path, FORMAT, REMEDY)
    config = PretrainConfig(**state["config"])
    vit = build_vit(config)
    weights = {n: t.float() if t.is_floating_point() else t for n, t in state["vit"].items()}
    load_weights(vit, weights, path, REMEDY)
    return Pretrained(vit.eval(), config, int(state["seed"]), History.from_dict(state["history"]),
                      state.get("seconds"))


def load_or_train(path: str | os.PathLike = CHECKPOINT, *,
                  config: PretrainConfig = PretrainConfig(), retrain: bool = False, seed: int = 0,
                  device=None, progress: bool = True) -> Pretrained:
    """Load the checkpoint at ``path`` if present (and ``retrain`` is false), else train and save."""
    if Path(path).is_file() and not retrain:
        return load(path)
    start = time.process_time()
    vit, history = pretrain(config, seed, device, progress)
    seconds = time.process_time() - start
    save(vit, history, config, seed, path, seconds)
    return Pretrained(vit, config, seed, history, seconds)


def main(argv: list[str] | None = None) -> None:
    """Command line: pretrain and save the ViT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = PretrainConfig() if args.epochs is None else PretrainConfig(epochs=args.epochs)
    done = load_or_train(args.out, config=config, retrain=True, seed=args.seed)
    print(f"wrote {args.out} after {done.seconds:.0f} CPU-seconds; last-epoch accuracy "
          f"{done.history.train_metrics['accuracy'][-1]:.3f}")


if __name__ == "__main__":
    main()
