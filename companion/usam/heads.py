"""UncertainSAM's heads: one small MLP per target on the segmenter's tokens, trained post hoc.

Each head is Linear(2D→2D)–ReLU–Linear(2D→2D)–ReLU–Linear(2D→1)–Sigmoid, trained with MSE
and SGD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..train import History, fit
from .records import GAP_SHIFT, GAPS, Predictions, USAMRecords, pair_tokens

# the paper's tuned SGD settings for COCO (default row of its hyper-parameter table)
PAPER_SGD = {"lr": 0.008713, "momentum": 0.1639, "weight_decay": 1e-3, "batch_size": 189,
             "epochs": 36}


class USAMHeads(nn.Module):
    """One 3-layer MLP per target, evaluated together as batched matrix products.

    Head h computes σ(W₃ ReLU(W₂ ReLU(W₁ l + b₁) + b₂) + b₃) on l = [IoU token ; mask token].
    """

    def __init__(self, names: Sequence[str], token_dim: int, hidden: int | None = None):
        super().__init__()
        if not names:
            raise ValueError("USAMHeads needs at least one target name.")
        self.names = tuple(names)
        self.token_dim = int(token_dim)
        d_in = 2 * self.token_dim
        hidden = hidden or d_in
        dims = [(d_in, hidden), (hidden, hidden), (hidden, 1)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in dims:  # nn.Linear's default initialisation, one slice per head
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(len(names), fan_in, fan_out)
                                             .uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(len(names), 1, fan_out)
                                            .uniform_(-bound, bound)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 2D) inputs l → (B, n_heads) outputs in [0, 1] (gaps still shifted by +0.5)."""
        if features.ndim != 2 or features.shape[1] != 2 * self.token_dim:
            raise ValueError(f"expected features of shape (B, {2 * self.token_dim}) = [IoU token ; "
                             f"mask token], got {tuple(features.shape)}.")
        x = features[None].expand(len(self.names), -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return torch.sigmoid(x[..., 0]).T

    def predict(self, iou_token: torch.Tensor, mask_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded predictions per target for every mask, each (B, 3); gaps back in [−0.5, 0.5]."""
        pairs = pair_tokens(iou_token, mask_tokens)
        out = self(pairs.flatten(0, 1)).unflatten(0, pairs.shape[:2])
        return {n: out[..., h] - (GAP_SHIFT if n in GAPS else 0.0) for h, n in enumerate(self.names)}

    def predict_chosen(self, predictions: Predictions) -> dict[str, torch.Tensor]:
        """Decoded predictions for the score-chosen mask of every instance, each (M,)."""
        with torch.inference_mode():
            out = self(predictions.features().to(self.weights[0].device)).cpu()
        return {n: out[:, h] - (GAP_SHIFT if n in GAPS else 0.0) for h, n in enumerate(self.names)}


def heads_loss(model: USAMHeads, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's loss: MSE between sigmoid outputs and encoded targets, summed over heads."""
    x, y = batch
    err = (model(x) - y) ** 2
    per_head = err.mean(0)
    return per_head.sum(), {"mse": per_head.mean().item()}


def train_heads(records: USAMRecords, *, sizes: Sequence[str] | None = None,
                epochs: int = PAPER_SGD["epochs"], lr: float = PAPER_SGD["lr"],
                momentum: float = PAPER_SGD["momentum"],
                weight_decay: float = PAPER_SGD["weight_decay"],
                batch_size: int = PAPER_SGD["batch_size"], optimizer: str = "sgd", seed: int = 0,
                masks: str = "all", device=None, progress: bool = True) -> tuple[USAMHeads, History]:
    """Train all heads post hoc (segmenter frozen) on the rows of ``sizes`` (default: all).

    ``masks``: train on every mask of a prompt (``"all"``) or only on the score's choice.
    """
    x, y = records.training_rows(sizes, masks=masks)
    torch.manual_seed(seed)
    heads = USAMHeads(records.target_names, x.shape[1] // 2)
    history = fit(heads, (x, y), epochs=epochs, loss=heads_loss, optimizer=optimizer, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                  device=device, progress=progress, desc="USAM heads")
    return heads.eval(), history
