"""Figures of the SLDD chapter: the diversity loss at work and the regularisation path.

The figures of any last layer (weights, a class, a decision) are in :mod:`companion.viz.classify`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..losses import feature_diversity_loss
from ..solvers.elastic_net import ElasticNetPath
from .classify import draw_weight_matrix
from .widgets import interactive_figure

__all__ = ["path_explorer", "plot_diversity_demo", "plot_path"]


def plot_diversity_demo(n_maps: int = 3, size: int = 8, steps: int = 150, lr: float = 2.0,
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
    cols = min(n_maps, 3)
    rows = 2 * -(-n_maps // cols)
    fig, axes = plt.subplots(rows + 1, cols, figsize=(2.3 * cols + 0.5, 2.2 * (rows + 1)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for half, (name, m) in enumerate((("before", start), ("after", end))):
        for f in range(n_maps):
            ax = axes[half * rows // 2 + f // cols, f % cols]
            ax.set_axis_on()
            ax.imshow(torch.softmax(m[0, f].flatten(), 0).view(size, size), cmap="magma")
            ax.set(title=f"{name}: feature {f + 1}", xticks=[], yticks=[])
    ax = axes[rows, 0]
    ax.set_axis_on()
    ax.plot(losses)
    ax.set(xlabel="step", ylabel=r"$-\mathcal{L}_{div}/\beta$", title="diversity term")
    soft = torch.softmax(end[0].flatten(1), 1).view(n_maps, size, size)
    rgb = torch.zeros(3, size, size)
    rgb[:min(n_maps, 3)] = (soft / soft.amax(dim=(1, 2), keepdim=True))[:3]
    axes[rows, 1].imshow(rgb.permute(1, 2, 0).numpy())
    axes[rows, 1].set_title("after: features 1–3\nas red, green, blue")
    return fig


def plot_path(path: ElasticNetPath, index: int | None = None, dense_accuracy: float | None = None,
                class_names: Sequence[str] | None = None) -> Figure:
    """Accuracy against features used along the path and, for entry ``index``, its weight matrix."""
    used = path.features_used.numpy()
    if index is None:
        fig, left = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.9), layout="constrained",
                                          gridspec_kw={"width_ratios": [1.1, 1]})
    left.plot(used, path.train_accuracy.numpy(), "o-", ms=3, label="train")
    if path.val_accuracy is not None:
        left.plot(used, path.val_accuracy.numpy(), "s-", ms=3, label="held out")
    if dense_accuracy is not None:
        left.axhline(dense_accuracy, color="k", ls="--", lw=1, label="dense model (test)")
    left.set(xlabel="features used (non-zero columns of W)", ylabel="accuracy",
             title="elastic-net path,\nλ_max → ε·λ_max")
    if index is not None:
        acc = (path.val_accuracy if path.val_accuracy is not None else path.train_accuracy)[index]
        left.plot(used[index], float(acc), "o", ms=12, mfc="none", mec="C3", mew=2,
                  label=f"entry {index}")
        image = draw_weight_matrix(
            right, path.weights[index], class_names=class_names,
            title=f"entry {index}: λ = {float(path.lambdas[index]):.3g},\n"
                  f"{float(path.per_class[index]):.1f} weights per class")
        fig.colorbar(image, ax=right, label="weight", shrink=0.8)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=9)
    return fig


def path_explorer(path: ElasticNetPath, dense_accuracy: float | None = None,
                  class_names: Sequence[str] | None = None, index: int | None = None):
    """A slider along the regularisation path over :func:`plot_path`."""
    import ipywidgets as widgets

    start = len(path) // 2 if index is None else int(index)
    slider = widgets.IntSlider(value=start, min=0, max=len(path) - 1, description="path entry",
                               continuous_update=False)
    return interactive_figure(plot_path, path=path, index=slider, dense_accuracy=dense_accuracy,
                              class_names=class_names)
