"""Fine-tune a backbone under a frozen sparse (or binary) last layer with CE + Feature Diversity Loss.

Shared by SLDD, Q-SENN, QPM and CHiQPM: ``model.head`` is replaced by the given layer (whose W and b
are frozen buffers), the head's dropout is set (0.1 in the papers) and ``companion.train.fit``
trains the backbone and, where the layer allows it, the normalisation μ/σ. Defaults are the
papers' fine-tuning recipe (SGD, momentum 0.95, lr 1e-4, weight decay 5e-4, StepLR(10, 0.4), β = 0.196).

Public API
----------
``finetune(model, layer, data, *, epochs, lr=1e-4, beta=0.196, ...) -> History``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..losses import DIVERSITY_BETA, ExtraLoss, diversity_criterion
from ..train import History, fit

__all__ = ["finetune"]


def finetune(model: nn.Module, layer: nn.Module, data: Any, *, epochs: int, lr: float = 1e-4,
             beta: float = DIVERSITY_BETA, momentum: float = 0.95, weight_decay: float = 5e-4,
             scheduler: Any = ("step", 10, 0.4), dropout: float = 0.1, batch_size: int = 16,
             val_data: Any = None, checkpoint: str | os.PathLike | None = None, seed: int | None = 0,
             device: str | torch.device | None = None, progress: bool = True,
             extra_losses: Mapping[str, ExtraLoss] | None = None, **fit_kwargs: Any) -> History:
    """Put ``layer`` in as ``model.head`` and fine-tune ``model`` with CE + β·𝓛_div; returns the History.

    ``model`` is a :class:`companion.models.Classifier`; ``layer`` a ``SparseLayer`` (or any head
    with ``weight``, ``select_maps``). ``extra_losses`` adds a method's own terms (see
    :func:`companion.losses.diversity_criterion`); only parameters with ``requires_grad`` train,
    so freeze a backbone before calling. Other keyword arguments go to :func:`companion.train.fit`.
    """
    if not hasattr(model, "forward_all") or not hasattr(model, "head"):
        raise TypeError(f"finetune needs a Classifier (forward_all and a replaceable head), got "
                        f"{type(model).__name__}.")
    if not hasattr(layer, "select_maps") or not hasattr(layer, "weight"):
        raise TypeError("layer must be a SparseLayer-like head (weight, select_maps), got "
                        f"{type(layer).__name__}.")
    n_out = layer.weight.shape[0]
    if n_out != getattr(model, "num_classes", n_out):
        raise ValueError(f"layer has {n_out} classes but the model {model.num_classes}.")
    if int(layer.selection.max()) >= model.num_features:
        raise ValueError(f"layer selects feature {int(layer.selection.max())} but the backbone has "
                         f"only {model.num_features} features.")
    model.head = layer
    if isinstance(getattr(model, "dropout", None), nn.Dropout):
        model.dropout.p = float(dropout)
    return fit(model, data, epochs=epochs, loss=diversity_criterion(beta, extra_losses), lr=lr,
               momentum=momentum, weight_decay=weight_decay, scheduler=scheduler, batch_size=batch_size,
               val_data=val_data, checkpoint=checkpoint, seed=seed, device=device,
               progress=progress, desc="fine-tune", **fit_kwargs)
