"""Figures and explorers of the SLDD chapter: the loss at work, the path, the sparse layer, decisions.

Every function returns a matplotlib Figure; the two explorers wrap ``path_figure`` and
``class_figure`` in ipywidgets controls (``companion.viz.interactive_figure``).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..losses import feature_diversity_loss
from ..solvers.elastic_net import ElasticNetPath
from .figures import overlay_heatmap
from .widgets import interactive_figure

__all__ = ["class_explorer", "class_figure", "decision_figure", "diversity_demo", "layer_figure",
           "path_explorer", "path_figure"]


def diversity_demo(n_maps: int = 3, size: int = 8, steps: int = 150, lr: float = 2.0,
                   beta: float = 1.0, seed: int = 0) -> Figure:
    """Descend 𝓛_div on ``n_maps`` overlapping maps of one image and show them before and after.

    The maps are the free variables (no network): what the loss asks of a backbone, in isolation.
    """
    if not 2 <= int(n_maps) <= 6:
        raise ValueError(f"n_maps must lie in [2, 6], got {n_maps}.")
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    blob = torch.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / size)
    start = (3 * blob + 0.3 * torch.rand(n_maps, size, size, generator=gen))[None]
    maps = start.clone().requires_grad_(True)
    logits, weight = torch.ones(1, 1), torch.ones(1, n_maps)
    opt = torch.optim.SGD([maps], lr=lr)
    losses = []
    for _ in range(steps):
        loss = feature_diversity_loss(torch.relu(maps), logits, weight, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(-loss.item() / beta)
    end = torch.relu(maps.detach())
    fig, axes = plt.subplots(2, n_maps + 1, figsize=(2.0 * (n_maps + 1), 4.2), layout="constrained")
    for row, (name, m) in enumerate((("before", start), ("after", end))):
        for f in range(n_maps):
            ax = axes[row, f]
            ax.imshow(torch.softmax(m[0, f].flatten(), 0).view(size, size), cmap="magma")
            ax.set_title(f"{name}: feature {f + 1}")
            ax.set_axis_off()
    ax = axes[0, n_maps]
    ax.plot(losses)
    ax.set(xlabel="step", ylabel=r"$-\mathcal{L}_{div}/\beta$", title="diversity term")
    soft = torch.softmax(end[0].flatten(1), 1).view(n_maps, size, size)
    rgb = torch.zeros(3, size, size)
    rgb[:min(n_maps, 3)] = (soft / soft.amax(dim=(1, 2), keepdim=True))[:3]
    axes[1, n_maps].imshow(rgb.permute(1, 2, 0).numpy())
    axes[1, n_maps].set_title("after: features 1–3 as R, G, B")
    axes[1, n_maps].set_axis_off()
    return fig


def path_figure(path: ElasticNetPath, index: int | None = None, dense_accuracy: float | None = None,
                class_names: Sequence[str] | None = None) -> Figure:
    """Accuracy against features used along the path and, for entry ``index``, its weight matrix."""
    used = path.features_used.numpy()
    if index is None:
        fig, left = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained",
                                          gridspec_kw={"width_ratios": [1.1, 1]})
    left.plot(used, path.train_accuracy.numpy(), "o-", ms=3, label="train")
    if path.val_accuracy is not None:
        left.plot(used, path.val_accuracy.numpy(), "s-", ms=3, label="held out")
    if dense_accuracy is not None:
        left.axhline(dense_accuracy, color="k", ls="--", lw=1, label="dense model (test)")
    left.set(xlabel="features used (non-zero columns of W)", ylabel="accuracy",
             title="elastic-net path, λ_max → ε·λ_max")
    if index is not None:
        acc = (path.val_accuracy if path.val_accuracy is not None else path.train_accuracy)[index]
        left.plot(used[index], float(acc), "o", ms=12, mfc="none", mec="C3", mew=2,
                  label=f"entry {index}")
        _weight_image(right, path.weights[index], class_names,
                      f"entry {index}: λ = {float(path.lambdas[index]):.3g}, "
                      f"{float(path.per_class[index]):.1f} weights per class")
    left.legend(loc="lower right")
    return fig


def _weight_image(ax, weight: Tensor, class_names: Sequence[str] | None, title: str,
                  feature_labels: Sequence[str] | None = None) -> None:
    w = weight.detach().cpu().numpy()
    lim = max(float(np.abs(w).max()), 1e-12)
    ax.imshow(np.where(w == 0, np.nan, w), cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_title(title)
    ax.set_xlabel("feature")
    ax.set_ylabel("class")
    ax.grid(False)
    if class_names is not None:
        ax.set_yticks(range(len(class_names)), class_names)
    if feature_labels is not None:
        ax.set_xticks(range(len(feature_labels)), feature_labels, rotation=90)


def layer_figure(weight: Tensor, class_names: Sequence[str] | None = None,
                 feature_labels: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """The sparse class–feature matrix W: blank where zero, red/blue for positive/negative weights."""
    fig, ax = plt.subplots(figsize=(0.35 * weight.shape[1] + 2.5, 0.32 * weight.shape[0] + 1.5),
                           layout="constrained")
    k = float((weight != 0).sum()) / weight.shape[0]
    _weight_image(ax, weight, class_names, title or f"sparse layer: {k:.1f} weights per class",
                  feature_labels)
    return fig


def decision_figure(image: Tensor, maps: Tensor, weight_row: Tensor, normalized: Tensor,
                    feature_ids: Sequence[int] | None = None, title: str = "") -> Figure:
    """One decision: each feature the class uses, its weight, contribution w·z and where it fires.

    ``maps`` (n_f, h, w) and ``normalized`` (n_f,) belong to the image; ``weight_row`` (n_f,) is
    the predicted class's row of W.
    """
    used = torch.nonzero(weight_row).flatten()
    contrib = weight_row * normalized
    used = used[torch.argsort(-contrib[used].abs())]
    n = max(len(used), 1)
    fig, axes = plt.subplots(1, n + 1, figsize=(2.1 * (n + 1), 2.6), layout="constrained")
    axes = np.atleast_1d(axes)
    axes[0].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    axes[0].set_title(title or "input")
    axes[0].set_axis_off()
    top = float(maps[used].max()) if len(used) else 1.0
    for ax, f in zip(axes[1:], used.tolist()):
        overlay_heatmap(image, maps[f], ax=ax, vmin=0, vmax=top)
        name = f"#{feature_ids[f]}" if feature_ids is not None else f"{f}"
        ax.set_title(f"feature {name}\nw={float(weight_row[f]):+.2f}, w·z={float(contrib[f]):+.2f}")
    return fig


def class_figure(images: Tensor, maps: Tensor, labels: Tensor, weight: Tensor, class_index: int,
                 n_examples: int = 4, class_names: Sequence[str] | None = None,
                 feature_ids: Sequence[int] | None = None) -> Figure:
    """A class's features (rows, by |w|) and their activation maps on examples of the class (columns)."""
    row = weight[class_index]
    used = torch.nonzero(row).flatten()
    used = used[torch.argsort(-row[used].abs())]
    examples = torch.nonzero(labels == class_index).flatten()[:n_examples]
    if len(used) == 0 or len(examples) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "this class uses no feature" if len(used) == 0 else "no example of this class",
                ha="center", va="center")
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(len(used), len(examples), squeeze=False,
                             figsize=(1.7 * len(examples) + 0.6, 1.7 * len(used) + 0.4), layout="constrained")
    top = float(maps[examples][:, used].max())
    for r, f in enumerate(used.tolist()):
        for c, i in enumerate(examples.tolist()):
            overlay_heatmap(images[i], maps[i, f], ax=axes[r, c], vmin=0, vmax=top)
        name = f"#{feature_ids[f]}" if feature_ids is not None else f"{f}"
        axes[r, 0].set_title(f"feature {name}, w={float(row[f]):+.2f}", loc="left", fontsize=8)
    name = class_names[class_index] if class_names is not None else f"class {class_index}"
    fig.suptitle(f"{name}: {len(used)} features")
    return fig


def path_explorer(path: ElasticNetPath, dense_accuracy: float | None = None,
                  class_names: Sequence[str] | None = None, index: int | None = None):
    """A slider along the regularisation path over :func:`path_figure`."""
    import ipywidgets as widgets

    start = len(path) // 2 if index is None else int(index)
    slider = widgets.IntSlider(value=start, min=0, max=len(path) - 1, description="path entry",
                               continuous_update=False)
    return interactive_figure(path_figure, path=path, index=slider, dense_accuracy=dense_accuracy,
                              class_names=class_names)


def class_explorer(images: Tensor, maps: Tensor, labels: Tensor, weight: Tensor,
                   class_names: Sequence[str], feature_ids: Sequence[int] | None = None,
                   n_examples: int = 4):
    """A class dropdown over :func:`class_figure`."""
    import ipywidgets as widgets

    dropdown = widgets.Dropdown(options=[(n, i) for i, n in enumerate(class_names)], value=0,
                                description="class")
    return interactive_figure(class_figure, images=images, maps=maps, labels=labels, weight=weight,
                              class_index=dropdown, n_examples=n_examples, class_names=class_names,
                              feature_ids=feature_ids)
