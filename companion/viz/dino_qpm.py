"""Figures of the DINO-QPM chapter: probes, maps on images, evidence before/after, Plausibility by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .figures import resize_heatmap, to_image

__all__ = ["first_of_each", "plot_evidence_maps", "plot_plausibility_by_hand", "plot_probes",
           "plot_token_maps"]


def plot_probes(scores: Mapping[str, Mapping[str, float]]) -> Figure:
    """Grouped bars: each probe (x groups) for each kind of features (one colour each)."""
    names = list(scores)
    probes = list(next(iter(scores.values())))
    fig, ax = plt.subplots(figsize=(7.0, 3.2), layout="constrained")
    width = 0.8 / len(names)
    x = np.arange(len(probes))
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, [scores[name][p] for p in probes], width,
               label=name)
    ax.set_xticks(x, probes)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return fig


def _colourbar(fig: Figure, ax, image, label: str | None = None) -> None:
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    if label:
        bar.set_label(label, fontsize=9)


def _heat_panel(fig: Figure, ax, image: torch.Tensor, heat: torch.Tensor, title: str,
                label: str | None = None, vmax: float | None = None) -> None:
    img = to_image(image)
    ax.imshow(img)
    shown = ax.imshow(resize_heatmap(heat, img.shape[:2]), cmap="inferno", alpha=0.6, vmin=0,
                      vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    _colourbar(fig, ax, shown, label)


def plot_token_maps(image: torch.Tensor, maps: Mapping[str, torch.Tensor]) -> Figure:
    """The image, then one heat map per entry of ``maps`` (each (h, w)), at most two."""
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(2.4 * (1 + len(maps)), 2.5),
                             layout="constrained")
    axes[0].imshow(to_image(image))
    axes[0].set_title("image", fontsize=10)
    axes[0].set_axis_off()
    for ax, (title, heat) in zip(axes[1:], maps.items(), strict=True):
        _heat_panel(fig, ax, image, heat, title)
    return fig


def plot_evidence_maps(images: torch.Tensor, evidence: Mapping[str, torch.Tensor],
                       masks: torch.Tensor) -> Figure:
    """Rows: images; columns: the class evidence G of each model, the object's patches outlined."""
    n, cols = len(images), len(evidence)
    fig, axes = plt.subplots(n, cols, squeeze=False, figsize=(3.1 * cols, 2.8 * n),
                             layout="constrained")
    for r in range(n):
        for c, (name, g) in enumerate(evidence.items()):
            ax = axes[r, c]
            heat = g[r] / g[r].max().clamp_min(1e-12)
            _heat_panel(fig, ax, images[r], heat, name if r == 0 else "", "G / max G")
            _outline(ax, masks[r], images[r].shape[-1])
    return fig


def _outline(ax, grid_mask: torch.Tensor, size: int) -> None:
    """Draw the cells of a patch-grid mask as white squares on an image of ``size`` pixels."""
    h, w = grid_mask.shape
    cell = size / w
    for i, j in torch.nonzero(grid_mask).tolist():
        ax.add_patch(Rectangle((j * cell - 0.5, i * cell - 0.5), cell, cell, fill=False,
                               edgecolor="white", linewidth=0.8))


def plot_plausibility_by_hand(image: torch.Tensor, evidence: torch.Tensor,
                              grid_mask: torch.Tensor) -> Figure:
    """The image with the dilated object mask, and G with its value in every patch."""
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.4), layout="constrained")
    axes[0].imshow(to_image(image))
    _outline(axes[0], grid_mask, image.shape[-1])
    axes[0].set_title("object patches (dilated)", fontsize=10)
    axes[0].set_axis_off()
    g = evidence.numpy()
    shown = axes[1].imshow(g, cmap="inferno", vmin=0)
    for (i, j), v in np.ndenumerate(g):
        colour = "black" if v > 0.6 * g.max() else "white"
        weight = "bold" if bool(grid_mask[i, j]) else "normal"
        axes[1].text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=9, color=colour,
                     fontweight=weight)
    for i, j in torch.nonzero(grid_mask).tolist():
        axes[1].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="cyan",
                                    linewidth=1.0))
    axes[1].set_title("G − min G per patch (object: cyan)", fontsize=10)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    _colourbar(fig, axes[1], shown)
    return fig


def first_of_each(labels: torch.Tensor, classes: Sequence[int]) -> list[int]:
    """The first index of each class in ``classes``."""
    return [int(torch.nonzero(labels == c).flatten()[0]) for c in classes]

