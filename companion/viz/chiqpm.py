"""CHiQPM's figures: one decision as a tree, the global hierarchy, and conformal sets compared."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..metrics.conformal import ConformalTable
from ..metrics.hierarchy import Hierarchy
from .figures import to_image
from .style import PALETTE

__all__ = ["plot_class_affinity", "plot_conformal_comparison", "plot_decision_tree"]

SET_COLOUR, PATH_COLOUR, OTHER = PALETTE[1], PALETTE[0], "#BBBBBB"


def plot_decision_tree(h: Hierarchy, index: int = 0, *, class_names: Sequence[str],
                       feature_ids: Sequence[int] | None = None, in_set=None, image=None,
                       max_classes: int = 12, title: str = "") -> Figure:
    """The tree of one decision: root → 1st feature → … → classes, the predicted path in bold.

    Level j groups the classes whose j strongest assigned features coincide, in order. Only the
    ``max_classes`` classes closest to the prediction (deepest shared path) are drawn; classes
    in ``in_set`` (a boolean row) are highlighted as the prediction set.
    """
    paths, depth, pred = h.paths[index], h.depth[index], int(h.predicted[index])
    k = paths.shape[1]
    keep = np.argsort(-depth, kind="stable")[:max_classes]
    keep = keep[np.lexsort(paths[keep].T[::-1])]  # leaves in path order: subtrees contiguous
    x_leaf = {int(c): i for i, c in enumerate(keep)}
    label = (lambda j: f"f{j}") if feature_ids is None else (lambda j: f"f{feature_ids[j]}")
    chosen = np.zeros(len(paths), bool) if in_set is None else np.asarray(in_set, bool)
    if image is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    else:
        fig, (pic, ax) = plt.subplots(1, 2, figsize=(7.5, 4.2), layout="constrained",
                                      gridspec_kw={"width_ratios": [1, 6]})
        pic.imshow(to_image(image))
        pic.set_title("test image", fontsize=9)
        pic.axis("off")
    nodes: dict[tuple, list[int]] = {}
    for c in keep:
        for j in range(k + 1):
            nodes.setdefault(tuple(paths[c, :j]), []).append(int(c))
    pos = {p: (np.mean([x_leaf[c] for c in cs]), -len(p)) for p, cs in nodes.items()}
    on_path = {tuple(paths[pred, :j]) for j in range(k + 1)}
    for p, (x, y) in pos.items():
        if p:
            px, py = pos[p[:-1]]
            bold = p in on_path
            ax.plot([px, x], [py, y], color=PATH_COLOUR if bold else OTHER,
                    lw=2.5 if bold else 1.0, zorder=1)
    for p, (x, y) in pos.items():
        if not p or len(p) == k:
            continue
        ax.text(x, y, label(p[-1]), ha="center", va="center", fontsize=9, zorder=3,
                bbox={"boxstyle": "round,pad=0.25", "fc": "white",
                      "ec": PATH_COLOUR if p in on_path else OTHER})
    for c in keep:
        x, y = x_leaf[int(c)], -k
        colour = SET_COLOUR if chosen[c] else ("white" if c != pred else "#DDEEFF")
        ax.text(x, y - 0.15, f"{label(paths[c, -1])}\n{class_names[c]}", ha="center", va="top",
                fontsize=9, rotation=0 if len(keep) <= 8 else 35, rotation_mode="anchor",
                zorder=3, bbox={"boxstyle": "round,pad=0.25", "fc": colour, "ec": "#555555"})
    ax.scatter([pos[()][0]], [0], s=80, color=PATH_COLOUR, zorder=3)
    ax.text(pos[()][0], 0.25, "image", ha="center", fontsize=9)
    ax.set_yticks(-np.arange(k + 1), ["root"] + [f"step {j}" for j in range(1, k + 1)])
    ax.set(xlim=(-0.8, len(keep) - 0.2), ylim=(-k - 1.4, 0.7), title=title)
    ax.set_xticks([])
    ax.grid(False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return fig


def plot_class_affinity(affinity: np.ndarray, *, class_names: Sequence[str],
                        superclass=None) -> Figure:
    """The global hierarchy: how deep two classes' paths coincide on average (0 to 1)."""
    C = len(class_names)
    order = np.arange(C) if superclass is None else np.argsort(np.asarray(superclass),
                                                               kind="stable")
    fig, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    image = ax.imshow(np.asarray(affinity)[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=1)
    if C <= 30:
        names = [class_names[i] for i in order]
        ax.set_xticks(range(C), names, rotation=90, fontsize=9)
        ax.set_yticks(range(C), names, fontsize=9)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="shared path depth / k")
    ax.set_title("classes ordered by true superclass", fontsize=10)
    return fig


def plot_conformal_comparison(table: ConformalTable) -> Figure:
    """Coverage and average set size against α, one line per method (mean ± standard deviation)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2), layout="constrained")
    alphas = np.array(table.alphas)
    for i, method in enumerate(table.methods):
        for ax, col in zip(axes, ("coverage", "size"), strict=True):
            ax.errorbar(alphas + (i - 1.5) * 0.004, table.column(col, method),
                        yerr=table.column(f"{col}_sd", method), marker="o", ms=4, capsize=3,
                        label=method, color=PALETTE[i % len(PALETTE)])
    axes[0].plot(alphas, 1 - alphas, "k--", lw=1, label="1 − α (target)")
    axes[0].set(xlabel="α", ylabel="empirical coverage")
    axes[1].set(xlabel="α", ylabel="average set size", ylim=(0, None))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=9)
    return fig
