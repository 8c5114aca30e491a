"""Figures of any last layer (SLDD, QPM, …): the weight matrix, a class's features, one decision.

Each ``plot_*`` returns a Figure at most three panels wide; ``class_explorer`` wraps
:func:`plot_class_features` in a class dropdown.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import Tensor

from .figures import overlay_heatmap
from .style import PAGE_WIDTH
from .widgets import interactive_figure

__all__ = ["class_explorer", "draw_weight_matrix", "plot_class_features", "plot_decision",
           "plot_pipeline", "plot_weight_matrix"]


def plot_pipeline(steps: Sequence[str], *, per_row: int = 3, width: float = PAGE_WIDTH) -> Figure:
    """A method's steps as boxes joined by arrows, at most ``per_row`` a row, snaking down.

    Rows run left to right, then right to left, so every arrow is straight and no box or arrow
    overlaps another; the figure fills the page's width.
    """
    n = len(steps)
    if n < 2:
        raise ValueError(f"plot_pipeline needs at least two steps, got {n}.")
    rows = -(-n // per_row)
    fig, ax = plt.subplots(figsize=(width, 1.25 * rows), layout="constrained")
    box_w, box_h = 0.74, 0.52

    def centre(i: int) -> tuple[float, float]:
        row, col = divmod(i, per_row)
        return (col if row % 2 == 0 else per_row - 1 - col), -row

    for i, text in enumerate(steps):
        x, y = centre(i)
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.02", fc="#E8F1FA", ec="#0072B2"))
        ax.text(x, y, text, ha="center", va="center")
        if i:
            (x0, y0), (x1, y1) = centre(i - 1), (x, y)
            if y0 == y1:  # along a row
                sign = 1 if x1 > x0 else -1
                start, end = (x0 + sign * box_w / 2, y0), (x1 - sign * box_w / 2, y1)
            else:  # down to the next row
                start, end = (x0, y0 - box_h / 2), (x1, y1 + box_h / 2)
            ax.annotate("", xy=end, xytext=start,
                        arrowprops={"arrowstyle": "-|>", "color": "#333333", "lw": 1.2})
    ax.set(xlim=(-0.5, per_row - 0.5), ylim=(-rows + 0.5, 0.5))
    ax.axis("off")
    return fig


def draw_weight_matrix(ax, weight: Tensor, *, class_names: Sequence[str] | None = None,
                       feature_labels: Sequence[str] | None = None, title: str = ""):
    """W on ``ax``: blank where zero, red/blue for positive/negative; returns the image (for a bar)."""
    w = torch.as_tensor(weight).detach().cpu().float().numpy()
    lim = max(float(np.abs(w).max()), 1e-12)
    image = ax.imshow(np.where(w == 0, np.nan, w), cmap="coolwarm", vmin=-lim, vmax=lim,
                      aspect="auto", interpolation="nearest")
    ax.set(title=title, xlabel="feature", ylabel="class")
    ax.grid(False)
    if class_names is not None:
        ax.set_yticks(range(len(class_names)), class_names, fontsize=9)
    if feature_labels is not None:
        ax.set_xticks(range(len(feature_labels)), feature_labels, rotation=90, fontsize=9)
    return image


def plot_weight_matrix(weight: Tensor, *, class_names: Sequence[str] | None = None,
                       feature_labels: Sequence[str] | None = None,
                       title: str | None = None) -> Figure:
    """The class–feature matrix W of a last layer, with a colour bar (binary W: one colour)."""
    n_c, n_f = weight.shape
    fig, ax = plt.subplots(figsize=(min(7.0, 0.32 * n_f + 2.8), min(7.0, 0.3 * n_c + 1.5)),
                           layout="constrained")
    k = float((torch.as_tensor(weight) != 0).sum()) / n_c
    image = draw_weight_matrix(ax, weight, class_names=class_names, feature_labels=feature_labels,
                               title=title or f"{n_c} classes × {n_f} features, {k:.1f} per class")
    fig.colorbar(image, ax=ax, label="weight", shrink=0.8)
    return fig


def plot_decision(image: Tensor, maps: Tensor, weight_row: Tensor, normalized: Tensor, *,
                  feature_ids: Sequence[int] | None = None, title: str = "") -> Figure:
    """One decision: the image, then each feature the class uses with w, w·z and where it fires.

    ``maps`` (n_f, h, w) and ``normalized`` (n_f,) belong to the image; ``weight_row`` (n_f,) is
    the predicted class's row of W. Three panels per row.
    """
    weight_row, normalized = weight_row.detach(), normalized.detach()
    used = torch.nonzero(weight_row).flatten()
    contrib = weight_row * normalized
    used = used[torch.argsort(-contrib[used].abs())]
    n = len(used) + 1
    rows = -(-n // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(7.0, 2.45 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    axes.flat[0].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    axes.flat[0].set_title(title or "input", fontsize=9)
    top = float(maps[used].max()) if len(used) else 1.0
    for ax, f in zip(axes.flat[1:], used.tolist(), strict=False):
        overlay_heatmap(image, maps[f], ax=ax, vmin=0, vmax=top)
        name = feature_ids[f] if feature_ids is not None else f
        ax.set_title(f"feature {name}\nw={float(weight_row[f]):+.2f}, "
                     f"w·z={float(contrib[f]):+.2f}", fontsize=9)
    if len(used):  # one scale for every map: a shared colour bar
        fig.colorbar(axes.flat[1].images[-1], ax=axes, shrink=0.6, label="activation")
    return fig


def plot_class_features(images: Tensor, maps: Tensor, labels: Tensor, weight: Tensor,
                        class_index: int, *, n_examples: int = 3,
                        class_names: Sequence[str] | None = None,
                        feature_ids: Sequence[int] | None = None) -> Figure:
    """A class's features (rows, by |w|) and their maps on examples of the class (≤ 3 columns)."""
    row = torch.as_tensor(weight)[class_index]
    used = torch.nonzero(row).flatten()
    used = used[torch.argsort(-row[used].abs(), stable=True)]
    labels = torch.as_tensor(labels)
    examples = torch.nonzero(labels == class_index).flatten()[:min(int(n_examples), 3)]
    if len(used) == 0 or len(examples) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "this class uses no feature" if len(used) == 0
                else "no example of this class", ha="center", va="center")
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(len(used), len(examples), squeeze=False,
                             figsize=(1.9 * len(examples) + 0.6, 1.9 * len(used) + 0.5),
                             layout="constrained")
    top = float(maps[examples][:, used].max())
    for r, f in enumerate(used.tolist()):
        for c, i in enumerate(examples.tolist()):
            overlay_heatmap(images[i], maps[i, f], ax=axes[r, c], vmin=0, vmax=top)
        name = feature_ids[f] if feature_ids is not None else f
        axes[r, 0].set_title(f"feature {name}, w={float(row[f]):+.2f}", loc="left", fontsize=9)
    fig.colorbar(axes[0, 0].images[-1], ax=axes, shrink=0.5, label="activation")
    name = class_names[class_index] if class_names is not None else f"class {class_index}"
    fig.suptitle(f"{name}: {len(used)} features", fontsize=10)
    return fig


def class_explorer(images: Tensor, maps: Tensor, labels: Tensor, weight: Tensor,
                   class_names: Sequence[str], feature_ids: Sequence[int] | None = None,
                   n_examples: int = 3):
    """A class dropdown over :func:`plot_class_features`."""
    import ipywidgets as widgets

    dropdown = widgets.Dropdown(options=[(n, i) for i, n in enumerate(class_names)], value=0,
                                description="class")
    return interactive_figure(plot_class_features, images=images, maps=maps, labels=labels,
                              weight=weight, class_index=dropdown, n_examples=n_examples,
                              class_names=class_names, feature_ids=feature_ids)
