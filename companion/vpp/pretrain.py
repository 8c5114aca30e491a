"""Pretrain VPP's smoke-world models: dense segmenter, then VPP and SViT-style fine-tuning.

The committed checkpoint ``companion/vpp/checkpoints/vpp_smoke.pt`` was made on a CPU with::

    python -m companion.vpp.pretrain --seed 0

(one thread, about twenty minutes on a shared CPU). :func:`load_or_train` loads it when it is present
and trains the same models otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import load_weights, read_checkpoint, write_checkpoint
from ..data.moving_shapes import MovingShapes, make_moving_shapes
from ..runtime import resolve_device
from ..train import History, fit
from .matching import frame_loss
from .pruning import PrunedSegmenter, chain_loss
from .schedule import KeepRatioSchedule
from .segmenter import VideoSegmenter, VideoSegmenterConfig

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "vpp_smoke.pt"
FORMAT = "companion.vpp_pretrain/1"
REMEDY = ("retrain it with companion.vpp.pretrain.load_or_train(path, retrain=True) or "
          "`python -m companion.vpp.pretrain`")


@dataclass(frozen=True)
class PretrainConfig:
    """Data and schedule of the smoke-world training (the paper's recipe at toy scale)."""

    n_videos: int = 512
    n_frames: int = 8
    image_size: int = 96
    patch_size: int = 6              # 256 tokens per frame: enough for pruning to pay on a CPU
    dim: int = 64
    dense_epochs: int = 3
    dense_lr: float = 1e-3
    dense_batch: int = 16
    sparse_epochs: int = 6
    sparse_lr: float = 1e-3          # selection modules; backbone and head train at ×0.1
    sparse_batch: int = 8
    chain_length: int = 3
    frame_range: int = 3
    pkr: float = 0.55                # the paper's operating point (ρ_map 0.7, ×0.8 per stage)


@dataclass(frozen=True)
class VPPModels:
    """The three models the chapter compares, and what they were trained with."""

    dense: VideoSegmenter
    vpp: PrunedSegmenter
    svit: PrunedSegmenter
    histories: dict = dataclasses.field(default_factory=dict)  # name → training History
    config: PretrainConfig = PretrainConfig()


def train_data(config: PretrainConfig, seed: int = 0) -> MovingShapes:
    """The training clips (validation clips use ``seed + 1``)."""
    return make_moving_shapes(config.n_videos, config.n_frames, config.image_size, seed=seed)


def train_dense(data: MovingShapes, config: PretrainConfig = PretrainConfig(), seed: int = 0,
                device=None, progress: bool = True,
                model: VideoSegmenter | None = None) -> tuple[VideoSegmenter, History]:
    """Dense training on single frames (AdamW, cosine schedule) of ``model`` (default: a new
    small segmenter; pass e.g. :func:`~companion.vpp.timm_port.from_timm` for a pretrained one)."""
    torch.manual_seed(seed)
    if model is None:
        model = VideoSegmenter(VideoSegmenterConfig(image_size=config.image_size,
                                                    patch_size=config.patch_size, dim=config.dim,
                                                    num_classes=len(data.classes)))
    history = fit(model, data.frames(), epochs=config.dense_epochs, loss=frame_loss, optimizer="adamw",
        lr=config.dense_lr, weight_decay=0.05, batch_size=config.dense_batch, scheduler="cosine",
        grad_clip=1.0, seed=seed, device=device, progress=progress, desc="dense")
    return model.eval(), history


def train_sparse(dense: VideoSegmenter, data: MovingShapes, schedule: KeepRatioSchedule,
                 config: PretrainConfig = PretrainConfig(), seed: int = 0, device=None,
                 progress: bool = True, desc: str = "sparse") -> tuple[PrunedSegmenter, History]:
    """Sparse fine-tuning on frame chains: selection modules at lr, backbone and head at lr/10."""
    torch.manual_seed(seed)
    model = PrunedSegmenter(_copy(dense), schedule)
    modules = [p for n, p in model.named_parameters() if not n.startswith("segmenter.")]
    groups = [{"params": modules, "lr": config.sparse_lr},
              {"params": model.segmenter.parameters(), "lr": config.sparse_lr / 10}]
    history = fit(model, data.chains(config.chain_length, config.frame_range, seed=seed),
        epochs=config.sparse_epochs, loss=chain_loss, optimizer="adamw", lr=config.sparse_lr,
        weight_decay=0.05, param_groups=groups, batch_size=config.sparse_batch,
        scheduler=("step", max(1, config.sparse_epochs * 2 // 3), 0.1), grad_clip=1.0, seed=seed,
        device=device, progress=progress, desc=desc)
    return model.eval(), history


def _copy(model: VideoSegmenter) -> VideoSegmenter:
    clone = VideoSegmenter(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.to(next(model.parameters()).device)


DENSE = KeepRatioSchedule(map_block=None, sm_blocks=(), sm_ratios=())  # no pruning anywhere


def schedules(config: PretrainConfig = PretrainConfig()) -> tuple[KeepRatioSchedule, KeepRatioSchedule]:
    """VPP's schedule and the later-layers-only schedule with the same target keep ratio."""
    vpp = KeepRatioSchedule.paper(config.pkr)
    return vpp, KeepRatioSchedule.later_only(vpp.pkr)


def pretrain(config: PretrainConfig = PretrainConfig(), seed: int = 0, device=None,
             progress: bool = True, data: MovingShapes | None = None,
             model: VideoSegmenter | None = None) -> VPPModels:
    """Train the dense model and fine-tune it twice: with VPP and with later-layer modules only.

    ``data`` defaults to the synthetic training clips; ``model`` to a new small segmenter.
    """
    data = train_data(config, seed) if data is None else data
    dense, h_dense = train_dense(data, config, seed, device, progress, model)
    vpp_schedule, svit_schedule = schedules(config)
    vpp, h_vpp = train_sparse(dense, data, vpp_schedule, config, seed, device, progress, "vpp")
    svit, h_svit = train_sparse(dense, data, svit_schedule, config, seed, device, progress, "svit")
    # The dense baseline gets the same chain fine-tuning without pruning, so that all three
    # models have seen the same training.
    tuned, h_tuned = train_sparse(dense, data, DENSE, config, seed, device, progress, "dense-ft")
    return VPPModels(tuned.segmenter.cpu(), vpp.cpu(), svit.cpu(),
                     {"dense": h_dense, "dense-ft": h_tuned, "vpp": h_vpp, "svit": h_svit}, config)


def save(models: VPPModels, path: str | os.PathLike = CHECKPOINT, seed: int = 0) -> Path:
    """Write the three models in half precision, atomically."""
    half = {name: {n: (t.half() if t.is_floating_point() else t)
                   for n, t in getattr(models, name).state_dict().items()}
            for name in ("dense", "vpp", "svit")}
    payload = {"segmenter": dataclasses.asdict(models.dense.config),
               "pretrain": dataclasses.asdict(models.config), "seed": seed, **half,
               "histories": {k: h.to_dict() for k, h in models.histories.items()}}
    return write_checkpoint(payload, path, FORMAT)


def load(path: str | os.PathLike = CHECKPOINT) -> VPPModels:
    """The models written by :func:`save`, on the CPU as :func:`pretrain` returns them (float32, eval)."""
    state = read_checkpoint(path, FORMAT, REMEDY)
    config = PretrainConfig(**state["pretrain"])
    seg_config = VideoSegmenterConfig(**state["segmenter"])
    vpp_schedule, svit_schedule = schedules(config)
    models = VPPModels(VideoSegmenter(seg_config),
                       PrunedSegmenter(VideoSegmenter(seg_config), vpp_schedule),
                       PrunedSegmenter(VideoSegmenter(seg_config), svit_schedule),
                       {k: History.from_dict(h) for k, h in state.get("histories", {}).items()},
                       config)
    for name in ("dense", "vpp", "svit"):
        weights = {n: t.float() if t.is_floating_point() else t for n, t in state[name].items()}
        load_weights(getattr(models, name), weights, path, REMEDY).eval()
    return models


def load_or_train(path: str | os.PathLike = CHECKPOINT, *,
                  config: PretrainConfig = PretrainConfig(), retrain: bool = False, seed: int = 0,
                  device=None, progress: bool = True) -> VPPModels:
    """Load the checkpoint at ``path`` if present (and ``retrain`` is false), else train and save."""
    if Path(path).is_file() and not retrain:
        return load(path)
    models = pretrain(config, seed, resolve_device(device), progress)
    save(models, path, seed)
    return models


def main(argv: list[str] | None = None) -> None:
    """Command line: train and save the three models."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    save(pretrain(PretrainConfig(), args.seed), args.out, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
