"""Figures of the concept-parts dataset: images with their part masks, the class–part matrix."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram

from ..data.concept_parts import ConceptParts
from .style import PAGE_WIDTH


def show_concept_parts(data: ConceptParts, n: int = 6, *, ncols: int = 3,
                       indices: list[int] | None = None, outline: bool = True) -> Figure:
    """A grid of images (at most three per row) with each part outlined and the class on top.

    Each drawn part is labelled with its index; the legend below the grid maps indices to names.
    """
    if not 1 <= int(ncols) <= 3:
        raise ValueError(f"ncols must lie in [1, 3] (the page is three images wide), got {ncols}.")
    indices = list(range(min(n, len(data)))) if indices is None else list(indices)
    nrows = max(1, -(-len(indices) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH, 2.45 * nrows + 0.5),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    seen: set[int] = set()
    for ax, i in zip(axes.flat, indices, strict=False):
        ax.imshow(data.images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(data.class_names[int(data.labels[i])])
        if not outline:
            continue
        masks = data.part_masks(i).numpy()
        own = data.class_parts[data.labels[i]].numpy()
        for p in np.flatnonzero(masks.any(axis=(1, 2))):
            # solid outline: a part of the image's class; dashed: a distractor
            ax.contour(masks[p], levels=[0.5], colors="white", linewidths=1.0,
                       linestyles="solid" if own[p] else "dashed")
            ys, xs = np.nonzero(masks[p])
            ax.text(xs.mean(), ys.mean(), str(p), color="white", fontsize=9, ha="center",
                    va="center", fontweight="bold")
            seen.add(int(p))
    fig.suptitle("Concept parts (solid outline: class part, dashed: distractor)")
    if seen:
        _part_legend(fig, [f"{p}: {data.part_names[p]}" for p in sorted(seen)])
    return fig


def _part_legend(fig: Figure, entries: list[str], columns: int = 3) -> None:
    """The part names in columns under the grid, in the figure's own text size."""
    rows = -(-len(entries) // columns)
    lines = ["".join(f"{e:<30s}" for e in entries[r::rows]) for r in range(rows)]
    width = max(len(line) for line in lines)
    text = "\n".join(line.ljust(width) for line in lines)  # monospace: columns line up
    fig.supxlabel(text, fontsize=9, family="monospace", ha="center", multialignment="left")


def show_class_parts(data: ConceptParts) -> Figure:
    """The class–part matrix as a heat map, rows in the order of the class dendrogram."""
    matrix = data.class_parts.numpy().astype(float)
    n_classes, n_parts = matrix.shape
    fig, (ax_tree, ax) = plt.subplots(
        1, 2, figsize=(PAGE_WIDTH, 2.2 + 0.3 * n_classes),
        gridspec_kw={"width_ratios": [1, 5]}, layout="constrained")
    tree = dendrogram(data.linkage(), orientation="left", no_labels=True, ax=ax_tree,
                      color_threshold=0, above_threshold_color="0.3")
    ax_tree.set_ylim(0, 10 * n_classes)  # dendrogram leaves sit at 5, 15, 25, ...
    ax_tree.axis("off")
    # dendrogram leaves run bottom-up; the heat map rows run top-down
    order = tree["leaves"][::-1]
    rows = matrix[order]
    # columns in order of the first row that uses them: the shared core parts form blocks
    first = np.where(rows.any(0), rows.argmax(0), n_classes)
    columns = np.lexsort((-rows.sum(0), first))
    ax.imshow(rows[:, columns], cmap="Greys", vmin=0, vmax=1.4, aspect="auto")
    ax.set_xticks(range(n_parts), [data.part_names[p] for p in columns], rotation=70, ha="right",
                  rotation_mode="anchor", fontsize=9)
    superclass = data.superclass.numpy()[order]
    ax.set_yticks(range(n_classes), [data.class_names[c] for c in order], fontsize=9)
    for row in np.flatnonzero(superclass[1:] != superclass[:-1]):
        ax.axhline(row + 0.5, color="tab:red", linewidth=1.2)
    ax.set_xticks(np.arange(n_parts + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_classes + 1) - 0.5, minor=True)
    ax.grid(False)
    ax.grid(which="minor", color="0.85", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_title("Class–part matrix (red lines separate superclasses)")
    return fig
