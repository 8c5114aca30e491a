"""One training loop for every chapter: progress bar, mixed precision, atomic checkpoints, resume, DDP."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .batches import as_dataset, batch_len, split_batch, to_device
from .checkpoint import read_checkpoint, write_checkpoint
from .distributed import Dispatch, DistributedView, all_reduce_sums, setup_distributed, world
from .losses import check_class_labels, classification_loss
from .optim import describe, make_optimizer, make_scheduler, trainable_groups
from .progress import tqdm
from .runtime import autocast, resolve_device, seed_everything, use_amp

__all__ = ["History", "fit", "evaluate", "predict"]

CHECKPOINT_FORMAT = "companion.train/1"

LossOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]
LossFn = Callable[[nn.Module, Any], LossOutput]


@dataclass(frozen=True)
class History:
    """What :func:`fit` measured, one entry per epoch."""

    train_loss: tuple[float, ...] = ()
    train_metrics: dict[str, tuple[float, ...]] = field(default_factory=dict)
    val_metrics: dict[str, tuple[float, ...]] = field(default_factory=dict)
    seconds: tuple[float, ...] = ()

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def appended(self, loss: float, metrics: Mapping[str, float], val: Mapping[str, float],
                 seconds: float) -> History:
        """A new history with one more epoch."""
        def grow(old: dict, new: Mapping) -> dict:  # a name missing in an epoch is NaN there
            keys = [*old, *(k for k in new if k not in old)]
            nan = float("nan")
            return {k: (*old.get(k, (nan,) * self.epochs), float(new.get(k, nan))) for k in keys}
        return History(train_loss=(*self.train_loss, float(loss)),
                       train_metrics=grow(self.train_metrics, metrics),
                       val_metrics=grow(self.val_metrics, val),
                       seconds=(*self.seconds, float(seconds)))

    def to_dict(self) -> dict:
        return {"train_loss": list(self.train_loss), "seconds": list(self.seconds),
                "train_metrics": {k: list(v) for k, v in self.train_metrics.items()},
                "val_metrics": {k: list(v) for k, v in self.val_metrics.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> History:
        return cls(train_loss=tuple(d["train_loss"]), seconds=tuple(d["seconds"]),
                   train_metrics={k: tuple(v) for k, v in d["train_metrics"].items()},
                   val_metrics={k: tuple(v) for k, v in d["val_metrics"].items()})


# -------------------------------------------------------------------------------- optimisation

NONFINITE_STEPS_AMP = 5  # consecutive non-finite losses under mixed precision before fit stops


class NonFiniteStreak:
    """Stop on non-finite losses: at once without AMP; under AMP after ``limit`` in a row.

    The gradient scaler skips a step whose gradients overflow, so one bad step under AMP is
    harmless; but a NaN from the data recurs, and the model would then silently stop training.
    """

    def __init__(self, limit: int, amp: bool = False):
        self.limit, self.amp, self.count = int(limit), bool(amp), 0

    def update(self, loss_value: float, epoch: int) -> None:
        """Count ``loss_value`` (finite: the streak ends) and raise once the streak reaches the limit."""
        if np.isfinite(loss_value):
            self.count = 0
            return
        self.count += 1
        if self.count < self.limit:
            return
        if not self.amp:
            raise FloatingPointError(f"The loss became {loss_value} in epoch {epoch + 1}; "
                                     "lower the learning rate or check the data.")
        raise FloatingPointError(
            f"The loss was non-finite ({loss_value}) for {self.count} consecutive steps in epoch "
            f"{epoch + 1} under mixed precision: the gradient scaler skips these steps, so the model "
            "has stopped training. Check the data for NaN/inf (torch.isfinite(x).all()), lower the "
            "learning rate, or pass amp=False to stop at the first bad step.")


# --------------------------------------------------------------------------------- checkpoints

BAR_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # what the bar shows; History has all


def _postfix(values: Mapping[str, float]) -> dict[str, str]:
    """The few numbers a progress bar shows, short enough that the bar fits a page's width."""
    return {k: f"{values[k]:.3g}" for k in BAR_METRICS if k in values}


def _rng_state(device: torch.device, generator: torch.Generator) -> dict:
    """Python, NumPy, torch (CPU and CUDA) and data-order generator states, loadable with weights_only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "data": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping, device: torch.device, generator: torch.Generator) -> None:
    """Restore what :func:`_rng_state` saved."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    generator.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`fit`, or a clear error."""
    return read_checkpoint(path, CHECKPOINT_FORMAT, "pass resume=False to train from scratch (the "
                           "file is then overwritten), or choose another checkpoint path")


def _check_config(saved: Mapping, current: Mapping, path: Path) -> None:
    """Raise a clear error listing every difference between two training configurations."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if old == new:
            continue
        if key == "parameters":
            old_d, new_d = dict(map(tuple, old or [])), dict(map(tuple, new or []))
            detail = next((f"{n}: {old_d.get(n)} vs {new_d.get(n)}" for n in {**old_d, **new_d}
                           if old_d.get(n) != new_d.get(n)), "order differs")
            diffs.append(f"model parameters differ ({detail})")
        else:
            diffs.append(f"{key}: checkpoint {old!r}, now {new!r}")
    if diffs:
        raise ValueError(f"Checkpoint {path} was written for a different model or configuration: "
                         + "; ".join(diffs) + ". Use another checkpoint path, delete the file, or "
                         "pass resume=False to start again.")


# ------------------------------------------------------------------------------------------ fit

def fit(model: nn.Module, train_data: Any, *, epochs: int, loss: LossFn | None = None,
        optimizer: str | Callable = "sgd", lr: float, weight_decay: float = 0.0,
        momentum: float = 0.9, param_groups: Sequence[Mapping] | None = None, batch_size: int = 64,
        scheduler: Any = None, device: str | torch.device | None = None, amp: bool | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = True, val_data: Any = None,
        seed: int | None = None, num_workers: int = 0, collate_fn: Callable | None = None,
        grad_clip: float | None = None, progress: bool = True, desc: str = "train",
        drop_last: bool = False, ddp_kwargs: Mapping[str, Any] | None = None) -> History:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs and return the :class:`History`.

    ``loss(model, batch)`` gets the batch on the device and returns a scalar tensor or
    ``(tensor, {name: float})`` (default: :func:`classification_loss`). Only parameters with
    ``requires_grad`` are optimised. ``optimizer`` is ``"sgd"``, ``"adamw"`` or a callable
    ``(groups, lr=, weight_decay=) -> Optimizer``; ``scheduler`` is ``None``, ``"cosine"``,
    ``("step", step_size, gamma)`` or ``optimizer -> scheduler``, stepped once per epoch.
    Mixed precision runs on CUDA unless ``amp=False``. With ``checkpoint`` a file is written
    atomically after every epoch (model, optimiser, scheduler, scaler, history, RNG states) and,
    with ``resume=True``, training continues from it: a killed run resumes to the same weights,
    and a finished one is simply loaded. Under ``torchrun`` (``WORLD_SIZE > 1``) the model is
    wrapped in DistributedDataParallel, ``batch_size`` is per process, and only rank 0 writes
    checkpoints and shows the progress bar; a loss function's calls of ``model(...)`` and of
    ``model.forward_*(...)`` go through DDP.
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    dataset = as_dataset(train_data)
    if len(dataset) == 0:
        raise ValueError("train_data is empty.")
    device = setup_distributed(resolve_device(device))
    rank, world_size = world()
    loss_fn = classification_loss if loss is None else loss
    if seed is not None:
        seed_everything(seed + rank)
    data_seed = int(seed) if seed is not None else int(torch.randint(0, 2**62, ()).item())
    if world_size > 1:
        shared = [data_seed]
        dist.broadcast_object_list(shared, src=0)
        data_seed = shared[0]

    model.to(device)
    groups, described = trainable_groups(model, param_groups)
    opt = make_optimizer(optimizer, groups, lr, weight_decay, momentum)
    sched = make_scheduler(scheduler, opt, int(epochs))
    amp_on = use_amp(device, amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_on)
    trainable = [p for g in groups for p in g["params"]]
    streak = NonFiniteStreak(NONFINITE_STEPS_AMP if amp_on else 1, amp=amp_on)

    generator = torch.Generator().manual_seed(data_seed)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=data_seed, drop_last=drop_last) if world_size > 1 else None
    loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=sampler is None,
                        sampler=sampler, generator=generator, num_workers=num_workers,
                        collate_fn=collate_fn, drop_last=drop_last,
                        pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(f"No batch to train on: {len(dataset)} samples with batch_size={batch_size} "
                         "and drop_last=True.")

    config = {"model": type(model).__qualname__,
              "parameters": [[n, list(p.shape)] for n, p in model.named_parameters()],
              "trainable": described, "loss": describe(loss_fn),
              "optimizer": optimizer if isinstance(optimizer, str) else describe(optimizer),
              "lr": float(lr), "weight_decay": float(weight_decay), "momentum": float(momentum),
              "scheduler": repr(scheduler) if not callable(scheduler) else describe(scheduler),
              "epochs": int(epochs), "batch_size": int(batch_size), "world_size": world_size,
              "train_size": len(dataset), "grad_clip": grad_clip, "drop_last": bool(drop_last)}
    path = Path(checkpoint).expanduser() if checkpoint is not None else None
    if path is not None and path.is_dir():
        raise IsADirectoryError(f"checkpoint must be a file path (e.g. {path / 'model.pt'}), "
                                f"got the folder {path}.")
    history, start = History(), 0
    if path is not None and resume and path.exists():
        state = _load_checkpoint(path)
        _check_config(state["config"], config, path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        if amp_on and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        history, start = History.from_dict(state["history"]), int(state["epoch"])
        _set_rng_state(state["rng"][rank], device, generator)

    view: Any = model
    if world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            Dispatch(model), device_ids=[device.index] if device.type == "cuda" else None,
            **dict(ddp_kwargs or {}))
        view = DistributedView(ddp, model)

    n_batches = len(loader)
    bar = tqdm(total=int(epochs) * n_batches, initial=start * n_batches, desc=desc,
               disable=not progress or rank != 0, dynamic_ncols=True)
    try:
        for epoch in range(start, int(epochs)):
            bar.set_description(f"{desc} {epoch + 1}/{epochs}")
            if sampler is not None:
                sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            model.train()
            sums: dict[str, float] = {}
            count = 0
            for batch in loader:
                batch = to_device(batch, device)
                with autocast(device, amp):
                    out = loss_fn(view, batch)
                value, logs = out if isinstance(out, tuple) else (out, {})
                if not isinstance(value, torch.Tensor) or value.ndim != 0:
                    raise TypeError("The loss function must return a scalar tensor or (tensor, "
                                    f"dict), got {type(value).__name__}.")
                loss_value = value.item()
                streak.update(loss_value, epoch)
                opt.zero_grad(set_to_none=True)
                scaler.scale(value).backward()
                if grad_clip is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
                scaler.step(opt)
                scaler.update()
                n = batch_len(batch)
                count += n
                for k, v in {"loss": loss_value, **logs}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                bar.update(1)
                bar.set_postfix(_postfix({k: v / count for k, v in sums.items()}), refresh=False)
            if sched is not None:
                sched.step()
            keys = sorted(sums)
            totals = all_reduce_sums([float(count)] + [sums[k] for k in keys], device)
            means = {k: s / totals[0] for k, s in zip(keys, totals[1:], strict=True)}
            if world_size > 1:
                for buf in model.buffers():  # BatchNorm statistics: keep rank 0's on every rank
                    dist.broadcast(buf, src=0)
            val = {} if val_data is None else evaluate(model, val_data, batch_size=batch_size,
                                                       device=device, amp=amp,
                                                       collate_fn=collate_fn)
            train_loss = means.pop("loss")
            history = history.appended(train_loss, means, val, time.perf_counter() - t0)
            bar.set_postfix(_postfix({"loss": train_loss, **means,
                                      **{f"val_{k}": v for k, v in val.items()}}))
            if path is not None:
                rng = [_rng_state(device, generator)]
                if world_size > 1:
                    rng = [None] * world_size
                    dist.all_gather_object(rng, _rng_state(device, generator))
                if rank == 0:
                    write_checkpoint({"config": config, "epoch": epoch + 1,
                                      "model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "scheduler": sched.state_dict() if sched is not None else None,
                                      "scaler": scaler.state_dict(), "history": history.to_dict(),
                                      "rng": rng}, path, CHECKPOINT_FORMAT)
    finally:
        bar.close()
    return history


# ------------------------------------------------------------------------------ evaluation

def _eval_batches(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                  progress: bool, desc: str, num_workers: int, collate_fn: Callable | None,
                  amp: bool | None) -> Iterable[tuple[torch.Tensor, Any]]:
    """``(logits, batch)`` for each batch, in order, in eval mode without gradients."""
    loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=False, num_workers=num_workers,
                        collate_fn=collate_fn, pin_memory=device.type == "cuda")
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
                batch = to_device(batch, device)
                x, _ = split_batch(batch)
                with autocast(device, amp):
                    logits = model(x)
                yield logits.float(), batch
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, data: Any, *, batch_size: int = 256,
             device: str | torch.device | None = None, progress: bool = False,
             amp: bool | None = None, num_workers: int = 0,
             collate_fn: Callable | None = None) -> dict[str, float]:
    """Top-1 ``accuracy`` and mean cross-entropy ``loss`` of a classifier on ``(x, y)`` data.

    Inside an initialised process group each rank evaluates its share and the sums are combined,
    so every rank returns the numbers of the whole dataset.
    """
    dataset = as_dataset(data)
    if len(dataset) == 0:
        raise ValueError("Cannot evaluate on an empty dataset.")
    device = resolve_device(device)
    rank, world_size = world()
    if world_size > 1:
        dataset = Subset(dataset, range(rank, len(dataset), world_size))
    correct = total_loss = count = 0.0
    for logits, batch in _eval_batches(model, dataset, batch_size, device, progress, "evaluate",
                                       num_workers, collate_fn, amp):
        y = split_batch(batch)[1]
        if y is None:
            raise ValueError("evaluate needs batches (x, y) with class labels y.")
        y = check_class_labels(y, logits, "evaluate")
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    count, correct, total_loss = all_reduce_sums([count, correct, total_loss], device)
    return {"accuracy": correct / count, "loss": total_loss / count}


def predict(model: nn.Module, data: Any, *, batch_size: int = 256,
            device: str | torch.device | None = None, progress: bool = False,
            amp: bool | None = None, num_workers: int = 0,
            collate_fn: Callable | None = None) -> torch.Tensor:
    """The model's outputs (logits) for every sample, in order, as a float32 CPU tensor."""
    dataset = as_dataset(data)
    device = resolve_device(device)
    outputs = [logits.cpu() for logits, _ in _eval_batches(
        model, dataset, batch_size, device, progress, "predict", num_workers, collate_fn, amp)]
    if not outputs:
        raise ValueError("Cannot predict on an empty dataset.")
    return torch.cat(outputs)
