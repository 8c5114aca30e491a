"""Training losses shared by the classification chapters: the Feature Diversity Loss (SLDD).

Public API
----------
``feature_diversity_loss(maps, logits, weight, beta=0.196) -> Tensor``: 𝓛_div of a batch.
``decision_maps(head, maps) -> (maps, weight)``: the maps and class–feature matrix a head decides
with (all maps and W for a dense ``nn.Linear``; the selected maps and W for a ``SparseLayer``).
``diversity_criterion(beta=0.196, extra=None) -> loss(model, batch)``: CE + 𝓛_div (+ a method's own
terms), for ``companion.train.fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batches import split_batch

__all__ = ["DIVERSITY_BETA", "ExtraLoss", "check_class_labels", "classification_loss", "decision_maps",
           "diversity_criterion", "feature_diversity_loss"]

DIVERSITY_BETA = 0.196  # β for ResNet-50/34 in the SLDD paper


def feature_diversity_loss(maps: Tensor, logits: Tensor, weight: Tensor,
                           beta: float = DIVERSITY_BETA) -> Tensor:
    """Feature Diversity Loss 𝓛_div (SLDD, Norrenbrock et al. 2023).

    For image b with predicted class ĉ_b, ŵ_b = |W_ĉb| / (‖W_ĉb‖₂ + 10⁻⁵); every map M_bf gets a
    spatial softmax S_bf(p), scaled by its relative mean activation r_bf = M̄_bf / max_f' M̄_bf':

        𝓛_div = −β/B Σ_b Σ_p max_f ŵ_bf r_bf S_bf(p)

    It is smallest (−β) when the features the predicted class relies on peak at different places.
    ``maps`` (B, n_f, h, w) are the maps of the features W (n_c × n_f) reads, ``logits`` (B, n_c).
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must have shape (B, n_f, h, w), got {tuple(maps.shape)}.")
    fits = weight.ndim == 2 and weight.shape[1] == maps.shape[1]
    if not fits or logits.shape != (maps.shape[0], weight.shape[0]):
        raise ValueError(f"shapes do not fit: maps {tuple(maps.shape)}, logits {tuple(logits.shape)}, "
                         f"weight {tuple(weight.shape)}; expected (B, n_f, h, w), (B, n_c), (n_c, n_f).")
    maps = maps.float()
    predicted = logits.argmax(dim=1)
    w = weight[predicted].abs().to(maps.dtype)
    w_hat = w / (w.norm(dim=1, keepdim=True) + 1e-5)
    spatial = torch.softmax(maps.flatten(2), dim=2)  # (B, n_f, h·w)
    mean = maps.mean(dim=(2, 3))
    relative = mean / mean.amax(dim=1, keepdim=True).clamp_min(1e-6)
    scaled = spatial * (w_hat * relative)[:, :, None]
    return -beta * scaled.amax(dim=1).sum(dim=1).mean()


def decision_maps(head: nn.Module, maps: Tensor) -> tuple[Tensor, Tensor]:
    """The feature maps and class–feature matrix W that ``head`` makes its decision with."""
    if hasattr(head, "select_maps"):
        return head.select_maps(maps), head.weight
    if isinstance(head, nn.Linear):
        return maps, head.weight
    raise TypeError(f"decision_maps needs an nn.Linear or a SparseLayer head, got {type(head).__name__}.")


ExtraLoss = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def diversity_criterion(beta: float = DIVERSITY_BETA, extra: Mapping[str, ExtraLoss] | None = None
                        ) -> Callable[[nn.Module, tuple], tuple[Tensor, dict]]:
    """``loss(model, batch)`` = CE + 𝓛_div (+ ``extra`` terms) with the model's current head.

    ``extra`` maps a name to ``term(maps, logits, weight, y) -> Tensor`` (the head's selected maps,
    the logits, its class–feature matrix W and the labels): a method's own loss terms, such as
    CHiQPM's Feature Grounding Loss, added to the total and logged under their names.
    """
    extra = dict(extra or {})
    for name, term in extra.items():
        if not callable(term):
            raise TypeError(f"extra loss {name!r} must be callable (maps, logits, weight, y) -> "
                            f"Tensor, got {type(term).__name__}.")

    def loss(model: nn.Module, batch: tuple) -> tuple[Tensor, dict]:
        x, y = batch[0], batch[1]
        logits, _, maps = model.forward_all(x)
        y = check_class_labels(y, logits)
        ce = F.cross_entropy(logits, y)
        used, weight = decision_maps(model.head, maps)
        div = feature_diversity_loss(used, logits, weight, beta) if beta else ce.new_zeros(())
        total = ce + div
        logged = {"ce": ce.item(), "diversity": div.item()}
        for name, term in extra.items():
            value = term(used, logits, weight, y)
            if value.ndim != 0:
                raise ValueError(f"extra loss {name!r} must return a scalar, got shape "
                                 f"{tuple(value.shape)}.")
            total = total + value
            logged[name] = value.item()
        logged["accuracy"] = (logits.argmax(1) == y).float().mean().item()
        return total, logged
    names = "".join(f", {name}" for name in extra)
    loss.__qualname__ = f"diversity_criterion(beta={beta}{names})"
    return loss


def check_class_labels(y: torch.Tensor, logits: torch.Tensor, where: str = "fit") -> torch.Tensor:
    """Labels ``y`` as int64 class indices in [0, K) for ``logits`` (B, K, ...), or a clear error.

    Integer labels of any width are cast to int64; one min/max per batch checks the range.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{where}: labels y must be a tensor of class indices, got "
                        f"{type(y).__name__}; give batches (x, y) with y a LongTensor.")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{where}: labels y must be integer class indices, got dtype {y.dtype}; "
                        "convert them with y.long() (if they hold whole numbers), or pass "
                        "loss=... for soft or regression targets.")
    if y.dtype != torch.long:
        y = y.long()
    if logits.ndim < 2:
        raise ValueError(f"{where}: the model must return logits of shape (B, K), got shape "
                         f"{tuple(logits.shape)}; pass loss=... for other outputs.")
    n_classes = logits.shape[1]
    if y.numel() == 0:
        return y
    low, high = (int(v) for v in torch.stack(torch.aminmax(y)).tolist())
    if low < 0:
        raise ValueError(f"{where}: label {low} is negative; labels must be class indices in "
                         f"[0, {n_classes}). Drop unlabelled samples (e.g. -1) or remap the labels "
                         f"to 0..{n_classes - 1}.")
    if high >= n_classes:
        raise ValueError(f"{where}: label {high} is out of range for a model with {n_classes} "
                         f"outputs (classes 0..{n_classes - 1}); remap the labels to "
                         f"0..{n_classes - 1} or build the model with num_classes >= {high + 1}.")
    return y


def classification_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of ``model(x)`` against ``y`` for a batch ``(x, y)``; logs the accuracy."""
    x, y = split_batch(batch)
    if y is None:
        raise ValueError("The default loss needs batches (x, y); pass loss=... for other data.")
    logits = model(x)
    y = check_class_labels(y, logits)
    loss = F.cross_entropy(logits, y)
    return loss, {"accuracy": (logits.argmax(1) == y).float().mean().item()}
