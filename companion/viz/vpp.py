"""Figures of the VPP chapter: clips with ground truth, kept patches, the temporal prior, curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .figures import overlay_heatmap, to_image
from .style import PALETTE
from .widgets import interactive_figure, static_figure


def instance_image(masks: torch.Tensor) -> np.ndarray:
    """Colour every instance mask (K, H, W) with its own palette colour on black (H, W, 3)."""
    masks = torch.as_tensor(masks).bool()
    out = np.zeros((*masks.shape[-2:], 3))
    for k, m in enumerate(masks):
        out[m.numpy()] = np.array(plt.matplotlib.colors.to_rgb(PALETTE[k % len(PALETTE)]))
    return out


def plot_clip(frames: torch.Tensor, masks: torch.Tensor, n: int = 6, title: str | None = None) -> Figure:
    """Frames of a clip (top) and their instance masks coloured by track id (bottom)."""
    idx = np.linspace(0, frames.shape[0] - 1, min(n, frames.shape[0])).round().astype(int)
    fig, axes = plt.subplots(2, len(idx), figsize=(1.7 * len(idx), 3.6), squeeze=False)
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
                        title: str | None = None) -> Figure:
    """One row per entry of ``rows`` (name → keep masks (T, N)), one column per frame."""
    T = frames.shape[0]
    fig, axes = plt.subplots(len(rows), T, figsize=(1.5 * T, 1.65 * len(rows) + 0.3), squeeze=False)
    for i, (name, keep) in enumerate(rows.items()):
        for t in range(T):
            _draw_kept_patches(frames[t], keep[t], grid, axes[i, t])
        axes[i, 0].text(-0.08, 0.5, name, transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_temporal_prior(previous: torch.Tensor, frame: torch.Tensor, deep_keep: torch.Tensor,
                          scores: torch.Tensor, keep: torch.Tensor, grid: int) -> Figure:
    """The temporal prior step by step: frame t−1 and its deep keep mask, frame t, the keep score
    s computed from the copied deep features, and the patches Map-SM keeps."""
    fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.7))
    _draw_kept_patches(previous, deep_keep, grid, axes[0], "t−1: kept at layer 6")
    axes[1].imshow(to_image(frame))
    axes[1].set_title("frame t")
    axes[1].axis("off")
    overlay_heatmap(frame, torch.as_tensor(scores).reshape(grid, grid), axes[2], vmin=0, vmax=1,
                    title="keep score s (from t−1)")
    axes[2].axis("off")
    _draw_kept_patches(frame, keep, grid, axes[3], f"kept at layer 2 ({float(keep.float().mean()):.0%})")
    fig.tight_layout()
    return fig


def plot_keep_per_layer(curves: Mapping[str, torch.Tensor]) -> Figure:
    """Kept-token ratio of every block for each method (name → (depth,))."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, ratios in curves.items():
        r = torch.as_tensor(ratios).float().numpy()
        ax.step(np.arange(1, len(r) + 1), r, where="mid", label=f"{name} (mean {r.mean():.2f})")
    ax.set(xlabel="layer", ylabel="kept-token ratio", ylim=(0, 1.05))
    ax.set_xticks(np.arange(1, len(r) + 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_keep(points: Mapping[str, Sequence[tuple[float, float]]], dense: float,
                            ylabel: str = "mask AP") -> Figure:
    """Accuracy against the patch keep ratio for each method, with the dense model as a line."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.axhline(dense, color="k", ls="--", lw=1, label="dense")
    ax.set(xlabel="patch keep ratio (mean over layers)", ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def keep_ratio_explorer(draw, keep_ratio: float = 0.7, minimum: float = 0.2):
    """A slider for the Map-SM keep ratio ρ_map over ``draw(keep_ratio) -> Figure``; returns
    (widget, static figure for the default value)."""
    slider = widgets.FloatSlider(value=keep_ratio, min=minimum, max=1.0, step=0.05,
                                 description="ρ_map", continuous_update=False)
    return interactive_figure(draw, keep_ratio=slider), static_figure(draw, keep_ratio=keep_ratio)


def plot_kept_clip(model, frames: torch.Tensor, keep_ratio: float) -> Figure:
    """Kept patches over a clip when a pruned segmenter's ratios are scaled so that ρ_map equals
    ``keep_ratio`` (selective modules keep their scheduled share by top-k)."""
    sched = model.schedule
    factor = keep_ratio / (sched.map_ratio if sched.map_block is not None else sched.sm_ratios[0])
    results = model.predict_clip(frames, mode="gather", schedule=sched.scaled(factor), topk=True)
    keep = torch.cat([r.keep for r in results])  # (T, depth, N)
    first = sched.map_block if sched.map_block is not None else sched.sm_blocks[0]
    rows = {f"layer {first + 1}": keep[:, first], f"layer {sched.depth}": keep[:, -1]}
    pkr = float(keep[1:].float().mean()) if len(keep) > 1 else float(keep.float().mean())
    return plot_kept_patches(frames, rows, model.segmenter.config.grid,
                               title=f"ρ_map = {keep_ratio:.2f}: patch keep ratio {pkr:.2f} "
                                     "(frames after the first)")
