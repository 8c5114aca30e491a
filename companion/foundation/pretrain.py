"""Pretrain the smoke world's frozen ViT: with labels of disjoint classes (shipped) or label-free.

Why supervised: a frozen foundation model needs real pretraining, and no DINOv2 weights can be
downloaded here. Two label-free objectives were measured first on concept-parts images
(``research/feasibility.md``): DINO self-distillation (390 s) and SimSiam (300 s) reached 0.875
and 0.892 with a linear probe on pooled tokens and 0.598 and 0.609 with k-NN, against 0.879 and
0.675 for the same ViT with random weights: neither beat random weights. A third is here,
``objective="masked"`` (the MAE/iBOT family): half of the 2×2-patch blocks are replaced by a
learned mask token and a linear head predicts the pixels of every hidden patch; no label is
read. Ten epochs of it (324 CPU-seconds, the same images and optimiser) fell below random
weights on every probe of the chapter's data; :mod:`companion.foundation.compare` measured it
and ``checkpoints/label_free.json`` holds the numbers, which the chapter prints. So the shipped
checkpoint trains with the labels of *other* classes (same part vocabulary, different part
sets, different seed): a transfer stand-in for self-supervised pretraining, which the chapter
says plainly.

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
OBJECTIVES = ("labels", "masked")
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
    rotation: float = 0.0       # largest angle (degrees) by which a pretraining part is turned
    data_seed: int = 1234
    exclude_seed: int = 0       # the chapter's data: seed 0, 10 classes
    exclude_classes: int = 10
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    objective: str = "labels"   # "labels" (supervised) or "masked" (label-free, no labels read)
    mask_ratio: float = 0.5     # "masked": share of patch blocks hidden from the ViT
    mask_block: int = 2         # "masked": side of a hidden block, in patches

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} is unknown; use one of {OBJECTIVES}.")


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
                               rotation=config.rotation, seed=config.data_seed)
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


class _MaskedTokens(nn.Module):
    """The ViT with a learned mask token and a linear head that predicts each patch's pixels."""

    def __init__(self, vit: FrozenViT):
        super().__init__()
        self.model = vit.vit.model
        self.patch = vit.patch_size[0]
        self.mask_token = nn.Parameter(0.02 * torch.randn(vit.num_features))
        self.to_pixels = nn.Linear(vit.num_features, 3 * self.patch ** 2)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Predicted pixels (B, N, 3·p²) of every patch, with the patches ``hidden`` (B, N) masked."""
        m = self.model
        tokens = m.patch_embed(x)
        tokens = torch.where(hidden[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = m.norm(m.blocks(m.norm_pre(m.patch_drop(m._pos_embed(tokens)))))
        return self.to_pixels(tokens[:, m.num_prefix_tokens:])


def block_mask(n: int, grid: int, block: int, ratio: float) -> torch.Tensor:
    """(n, grid²) bool: for each image, a random ``ratio`` of the ``block``×``block`` patch blocks."""
    blocks = -(-grid // block)
    n_hidden = max(1, round(ratio * blocks * blocks))
    order = torch.rand(n, blocks * blocks).argsort(1)
    coarse = (order.argsort(1) < n_hidden).view(n, blocks, blocks)
    fine = coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)
    return fine[:, :grid, :grid].reshape(n, grid * grid)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) images as (B, N, 3·p²) patches, in the ViT's token order (row by row)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch ** 2)


def _masked_loss(config: PretrainConfig):
    def loss(model: _MaskedTokens, batch: tuple) -> tuple[torch.Tensor, dict]:
        x = batch[0]  # the labels are never read
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        hidden = block_mask(len(x), config.image_size // config.patch_size, config.mask_block,
                            config.mask_ratio).to(x.device)
        error = (model(x, hidden) - patchify(x, model.patch)).pow(2).mean(-1)
        mse = error[hidden].mean()
        return mse, {"masked_mse": mse.item()}
    return loss


def pretrain(config: PretrainConfig = PretrainConfig(), seed: int = 0, device=None,
             progress: bool = True) -> tuple[FrozenViT, History]:
    """Train the ViT (AdamW, cosine schedule) on the disjoint classes' images; returns it frozen.

    ``config.objective`` "labels" classifies the images by class; "masked" predicts the pixels
    of hidden patch blocks from the visible ones and never reads a label.
    """
    seed_everything(seed)
    vit = build_vit(config)
    data = pretraining_data(config)
    if config.objective == "labels":
        trainer, loss = _Pretrainer(vit, int(data.tensors[1].max()) + 1), _loss
    else:
        trainer, loss = _MaskedTokens(vit), _masked_loss(config)
    trainer.requires_grad_(True)
    trainer.train()
    history = fit(trainer, data, epochs=config.epochs, loss=loss, optimizer="adamw", lr=config.lr,
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
    parser.add_argument("--objective", choices=OBJECTIVES, default="labels")
    parser.add_argument("--rotation", type=float, default=0.0, help="largest part angle (degrees)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = {"objective": args.objective, "rotation": args.rotation}
    options |= {} if args.epochs is None else {"epochs": args.epochs}
    done = load_or_train(args.out, config=PretrainConfig(**options), retrain=True, seed=args.seed)
    last = {k: v[-1] for k, v in done.history.train_metrics.items()}
    print(f"wrote {args.out} after {done.seconds:.0f} CPU-seconds; last epoch "
          + ", ".join(f"{k} {v:.4f}" for k, v in last.items()))


if __name__ == "__main__":
    main()
