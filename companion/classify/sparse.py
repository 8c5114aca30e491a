"""The frozen sparse (or binary) last layer shared by SLDD, Q-SENN, QPM, CHiQPM and DINO-QPM.

The layer looks only at the n_f selected features of the pooled vector f, normalises them and
applies a fixed class–feature matrix (the papers' ``SLDDLevel``):

    logits = W · ((f[selection] − μ) / max(σ, 10⁻⁶)) + b

W (``weight``, n_c × n_f) and b (``bias``) are frozen buffers: the assignment is the result of
the method (glm-saga + pruning, ternary quantisation, a binary program) and does not change during
fine-tuning. μ and σ (``mean``, ``std``) are trainable parameters when ``trainable_norm`` is true
(SLDD, Q-SENN) and frozen buffers otherwise (QPM, CHiQPM). CHiQPM passes ``relu=True`` to clamp
the normalised features at zero.

Use it as the head of a :class:`companion.models.Classifier`: ``model.head = SparseLayer(...)``.

Public API
----------
``SparseLayer(selection, weight, mean, std, bias=None, *, trainable_norm=True, relu=False)``
with ``forward(pooled) -> logits``, ``normalize(pooled) -> (B, n_f)``, ``select_maps(maps)``,
``dense_weight(num_features) -> (n_c, D)`` and the properties ``num_classes``, ``num_features``,
``per_class``, ``features_used``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SparseLayer"]

STD_FLOOR = 1e-6


class SparseLayer(nn.Module):
    """Frozen class–feature matrix over normalised selected features: W((f_sel − μ)/σ) + b."""

    def __init__(self, selection: Tensor, weight: Tensor, mean: Tensor, std: Tensor,
                 bias: Tensor | None = None, *, trainable_norm: bool = True, relu: bool = False):
        super().__init__()
        selection = torch.as_tensor(selection)
        if selection.ndim != 1 or selection.is_floating_point() or len(selection) == 0:
            raise ValueError("selection must be a non-empty 1-D tensor of feature indices, got "
                             f"shape {tuple(selection.shape)} and dtype {selection.dtype}.")
        if len(torch.unique(selection)) != len(selection) or int(selection.min()) < 0:
            raise ValueError("selection must hold distinct, non-negative feature indices.")
        weight = torch.as_tensor(weight, dtype=torch.float32)
        n_f = len(selection)
        if weight.ndim != 2 or weight.shape[1] != n_f:
            raise ValueError(f"weight must have shape (n_classes, {n_f}) to match the {n_f} selected "
                             f"features, got {tuple(weight.shape)}.")
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.shape != (n_f,) or std.shape != (n_f,):
            raise ValueError(f"mean and std must have shape ({n_f},), got {tuple(mean.shape)} and "
                             f"{tuple(std.shape)}.")
        if not (torch.isfinite(weight).all() and torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("weight, mean and std must be finite (no NaN or inf).")
        bias = torch.zeros(weight.shape[0]) if bias is None else torch.as_tensor(bias, dtype=torch.float32)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}.")
        self.register_buffer("selection", selection.long().clone())
        self.register_buffer("weight", weight.clone())
        self.register_buffer("bias", bias.clone())
        self.trainable_norm = bool(trainable_norm)
        self.relu = bool(relu)
        if self.trainable_norm:
            self.mean = nn.Parameter(mean.clone())
            self.std = nn.Parameter(std.clone())
        else:
            self.register_buffer("mean", mean.clone())
            self.register_buffer("std", std.clone())

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def num_features(self) -> int:
        """n_f, the number of selected features."""
        return self.weight.shape[1]

    @property
    def per_class(self) -> float:
        """Mean number of non-zero weights per class (k)."""
        return float((self.weight != 0).sum()) / self.num_classes

    @property
    def features_used(self) -> int:
        """Selected features with a non-zero weight for at least one class."""
        return int((self.weight != 0).any(dim=0).sum())

    def normalize(self, pooled: Tensor) -> Tensor:
        """The normalised selected features (f_sel − μ)/σ, shape (B, n_f)."""
        if pooled.ndim != 2 or pooled.shape[1] <= int(self.selection.max()):
            raise ValueError(f"SparseLayer expects pooled features (B, D) with D > "
                             f"{int(self.selection.max())} (the largest selected index), got "
                             f"{tuple(pooled.shape)}.")
        return self.normalize_selected(pooled[:, self.selection])

    def normalize_selected(self, selected: Tensor) -> Tensor:
        """(f_sel − μ)/σ (then ReLU where ``relu``) of features already restricted to the selection."""
        z = (selected - self.mean) / self.std.clamp_min(STD_FLOOR)
        return torch.relu(z) if self.relu else z

    def select_maps(self, maps: Tensor) -> Tensor:
        """The feature maps of the selected features, (B, n_f, h, w)."""
        return maps[:, self.selection]

    def dense_weight(self, num_features: int) -> Tensor:
        """W scattered into the columns of all ``num_features`` backbone features (zeros elsewhere)."""
        out = self.weight.new_zeros(self.num_classes, int(num_features))
        out[:, self.selection] = self.weight
        return out

    def forward(self, pooled: Tensor) -> Tensor:
        return self.normalize(pooled) @ self.weight.T + self.bias

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, features={self.num_features}, "
                f"per_class={self.per_class:.2f}, trainable_norm={self.trainable_norm}, relu={self.relu}")
