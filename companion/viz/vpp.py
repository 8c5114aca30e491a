"""Figures of the VPP chapter: the method's diagram, clips with ground truth, kept patches, the
temporal prior and curves. At most three panels a row, at most 7.5 in wide, legends outside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .diagram import diagram_arrow, diagram_box
from .figures import resize_heatmap, to_image
from .style import HEATMAP_CMAP, PALETTE
from .widgets import Explorer, interactive_figure


def instance_image(masks: torch.Tensor) -> np.ndarray:
    """Colour every instance mask (K, H, W) with its own palette colour on black (H, W, 3)."""
    masks = torch.as_tensor(masks).bool()
    out = np.zeros((*masks.shape[-2:], 3))
    for k, m in enumerate(masks):
        out[m.numpy()] = np.array(plt.matplotlib.colors.to_rgb(PALETTE[k % len(PALETTE)]))
    return out


def plot_clip(frames: torch.Tensor, masks: torch.Tensor, n: int = 3,
              title: str | None = None) -> Figure:
    """Frames of a clip (top) and their instance masks coloured by track id (bottom)."""
    idx = np.linspace(0, frames.shape[0] - 1, min(n, frames.shape[0])).round().astype(int)
    fig, axes = plt.subplots(2, len(idx), figsize=(2.2 * len(idx), 4.8), squeeze=False)
    for j, t in enumerate(idx):
        axes[0, j].imshow(to_image(frames[t]))
        axes[1, j].imshow(instance_image(masks[t]))
        axes[0, j].set_title(f"t = {t}")
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_kept_patches(image: torch.Tensor, keep: torch.Tensor, grid: int, ax=None, title: str | None = None):
    """Show ``image`` with the patches that ``keep`` (N,) drops greyed out."""
    ax = ax or plt.gca()
    img = to_image(image)
    patch = img.shape[0] // grid
    kept = np.kron(torch.as_tensor(keep).float().reshape(grid, grid).numpy(), np.ones((patch, patch)))
    shown = img * kept[..., None] + (0.15 + 0.25 * img.mean(-1, keepdims=True)) * (1 - kept[..., None])
    ax.imshow(shown)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def plot_kept_patches(frames: torch.Tensor, rows: Mapping[str, torch.Tensor], grid: int,
                      title: str | None = None, times: Sequence[int] | None = None) -> Figure:
    """One row per entry of ``rows`` (name → keep masks (T, N)), one column per frame of
    ``times`` (default: the first, middle and last frame)."""
    T = frames.shape[0]
    times = list(times) if times is not None else sorted({0, T // 2, T - 1})
    fig, axes = plt.subplots(len(rows), len(times),
                             figsize=(2.2 * len(times), 2.6 * len(rows) + 0.8), squeeze=False)
    for i, (name, keep) in enumerate(rows.items()):
        for j, t in enumerate(times):
            _draw_kept_patches(frames[t], keep[t], grid, axes[i, j],
                               f"t = {t}, {float(keep[t].float().mean()):.0%} kept")
        axes[i, 0].text(-0.08, 0.5, name, transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_temporal_prior(previous: torch.Tensor, frame: torch.Tensor, deep_keep: torch.Tensor,
                        scores: torch.Tensor, keep: torch.Tensor, grid: int) -> Figure:
    """The temporal prior step by step: frame t−1 and its deep keep mask, frame t, the keep score
    s computed from the copied deep features (with a colour bar), and the patches Map-SM keeps."""
    fig, axes = plt.subplots(2, 2, figsize=(5.6, 5.8))
    axes = axes.ravel()
    _draw_kept_patches(previous, deep_keep, grid, axes[0], "t−1: kept at layer 6")
    axes[1].imshow(to_image(frame))
    axes[1].set_title("frame t")
    axes[1].axis("off")
    img = to_image(frame)
    axes[2].imshow(img)
    heat = axes[2].imshow(resize_heatmap(torch.as_tensor(scores).reshape(grid, grid), img.shape[:2]),
                          cmap=HEATMAP_CMAP, alpha=0.55, vmin=0, vmax=1, interpolation="bilinear")
    axes[2].set_title("keep score s (from t−1)")
    axes[2].axis("off")
    fig.colorbar(heat, ax=axes[2], fraction=0.046, pad=0.04)
    _draw_kept_patches(frame, keep, grid, axes[3],
                       f"kept at layer 2 ({float(keep.float().mean()):.0%})")
    fig.tight_layout()
    return fig


def plot_method() -> Figure:
    """VPP in one picture: frame t−1's deep features, carried to frame t by Map-SM, decide which
    patches frame t computes from layer 2 on."""
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    ax.set(xlim=(-0.2, 15.2), ylim=(-0.2, 7.8))
    ax.axis("off")
    grey, blue, orange = "#e6e6e6", "#cfe3f3", "#f8d9b0"
    # frame t−1, run before: its deep features and keep mask are the prior
    diagram_box(ax, 0.0, 6.1, 2.2, 1.4, "frame $t-1$", grey)
    diagram_box(ax, 2.8, 6.1, 2.6, 1.4, "blocks 1–6", grey)
    diagram_box(ax, 6.0, 6.1, 3.0, 1.4, "deep features\n$X_6^{t-1}$, mask $M_6^{t-1}$", blue)
    diagram_box(ax, 9.6, 6.1, 2.6, 1.4, "blocks 7–12,\nhead", grey)
    for a, b in [((2.2, 6.8), (2.8, 6.8)), ((5.4, 6.8), (6.0, 6.8)), ((9.0, 6.8), (9.6, 6.8))]:
        diagram_arrow(ax, a, b)
    # frame t
    diagram_box(ax, 0.0, 0.6, 2.2, 1.4, "frame $t$", grey)
    diagram_box(ax, 2.8, 0.6, 2.6, 1.4, "block 1\n(all patches)", grey)
    diagram_box(ax, 6.0, 0.6, 3.0, 1.4, "top-$K$ patches\nby score $s$", orange)
    diagram_box(ax, 9.6, 0.6, 2.6, 1.4, "blocks 2–12\non kept patches", grey)
    diagram_box(ax, 12.8, 0.6, 2.2, 1.4, "head on\nfull grid", grey)
    for a, b in [((2.2, 1.3), (2.8, 1.3)), ((9.0, 1.3), (9.6, 1.3)), ((12.2, 1.3), (12.8, 1.3))]:
        diagram_arrow(ax, a, b)
    # Map-SM between the rows
    diagram_box(ax, 3.6, 3.2, 7.8, 1.7, "Map-SM: for each patch of $t$, copy the deep\n"
         "feature of the most similar patch of $t-1$\nand score it with a tiny MLP", orange)
    diagram_arrow(ax, (7.5, 6.1), (7.5, 4.9), PALETTE[3])
    diagram_arrow(ax, (4.1, 2.0), (4.8, 3.2), PALETTE[3])
    diagram_arrow(ax, (7.5, 3.2), (7.5, 2.0), PALETTE[3])
    ax.text(12.4, 0.1, "dropped patches skip the blocks unchanged", ha="center",
            va="center", fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def plot_keep_per_layer(curves: Mapping[str, torch.Tensor]) -> Figure:
    """Kept-token ratio of every block for each method (name → (depth,))."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, ratios in curves.items():
        r = torch.as_tensor(ratios).float().numpy()
        ax.step(np.arange(1, len(r) + 1), r, where="mid", label=f"{name} (mean {r.mean():.2f})")
    ax.set(xlabel="layer", ylabel="kept-token ratio", ylim=(0, 1.05))
    ax.set_xticks(np.arange(1, len(r) + 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_accuracy_vs_keep(points: Mapping[str, Sequence[tuple[float, float]]], dense: float,
                            ylabel: str = "mask AP") -> Figure:
    """Accuracy against the patch keep ratio for each method, with the dense model as a line."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.axhline(dense, color="k", ls="--", lw=1, label="dense")
    ax.set(xlabel="patch keep ratio (mean over layers)", ylabel=ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def keep_ratio_explorer(draw, keep_ratio: float = 0.7, minimum: float = 0.2) -> Explorer:
    """A slider for the Map-SM keep ratio ρ_map over ``draw(keep_ratio) -> Figure`` (live in
    Jupyter, its first figure a picture in the book)."""
    slider = widgets.FloatSlider(value=keep_ratio, min=minimum, max=1.0, step=0.05,
                                 description="ρ_map", continuous_update=False)
    return interactive_figure(draw, keep_ratio=slider)


def plot_kept_clip(model, frames: torch.Tensor, keep_ratio: float) -> Figure:
    """Kept patches over a clip when a pruned segmenter's ratios are scaled so that ρ_map equals
    ``keep_ratio``."""
    sched = model.schedule
    factor = keep_ratio / (sched.map_ratio if sched.map_block is not None else sched.sm_ratios[0])
    results = model.predict_clip(frames, mode="gather", schedule=sched.scaled(factor))
    keep = torch.cat([r.keep for r in results])  # (T, depth, N)
    first = sched.map_block if sched.map_block is not None else sched.sm_blocks[0]
    rows = {f"layer {first + 1}": keep[:, first], f"layer {sched.depth}": keep[:, -1]}
    pkr = float(keep[1:].float().mean()) if len(keep) > 1 else float(keep.float().mean())
    return plot_kept_patches(frames, rows, model.segmenter.config.grid,
                             title=f"ρ_map = {keep_ratio:.2f}: patch keep ratio {pkr:.2f}\n"
                                   "(frames after the first)")
