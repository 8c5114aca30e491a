"""Figures of the Q-SENN chapter: the loop, quantisation, iterations and feature naming."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .classify import draw_weight_matrix

__all__ = ["plot_iteration", "plot_naming", "plot_qsenn_loop", "plot_quantisation"]

BOX = {"fc": "#E8F1FA", "ec": "#0072B2"}


def plot_qsenn_loop() -> Figure:
    """Q-SENN in one picture: the path's solution quantised to ±m, fine-tuned, and again."""
    fig, ax = plt.subplots(figsize=(7.0, 2.6), layout="constrained")
    steps = ["dense model\nCE + diversity", "features f\nof the\ncurrent model",
             "path: least\nregularised\nsolution $W^d$", "quantise to\n{−m, 0, +m},\nbias rule",
             "fine-tune\nunder the\nfrozen layer"]
    for x, text in enumerate(steps):
        ax.add_patch(FancyBboxPatch((x - 0.4, -0.32), 0.8, 0.64, boxstyle="round,pad=0.02", **BOX))
        ax.text(x, 0, text, ha="center", va="center", fontsize=9)
    for x in range(4):
        ax.annotate("", xy=(x + 0.58, 0), xytext=(x + 0.42, 0), arrowprops={"arrowstyle": "->"})
    ax.add_patch(FancyArrowPatch((4.0, -0.36), (1.0, -0.36), connectionstyle="arc3,rad=-0.35",
                                 arrowstyle="->", mutation_scale=12, color="#D55E00"))
    ax.text(2.5, -0.98, "re-extract the features and repeat: 4 iterations (10, 10, 10, 40 epochs)",
            ha="center", va="center", fontsize=9, color="#D55E00")
    ax.text(1.0, 0.48, "n_f features selected\nonce, in iteration 0", ha="center", fontsize=9,
            color="#555555")
    ax.set(xlim=(-0.5, 4.5), ylim=(-1.15, 0.8))
    ax.axis("off")
    return fig


def plot_quantisation(weight, ternary, threshold: float, m: float) -> Figure:
    """A small example: W^d, its sorted |w| with the threshold τ, and the ternary W (3 panels)."""
    w = torch.as_tensor(weight).float()
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.6), layout="constrained")
    image = draw_weight_matrix(axes[0], w, title="dense solution $W^d$")
    fig.colorbar(image, ax=axes[0], shrink=0.8)
    mags = np.sort(w.abs().flatten().numpy())[::-1]
    kept = mags > threshold
    axes[1].bar(np.arange(len(mags)), mags, color=np.where(kept, "#0072B2", "#BBBBBB"))
    axes[1].axhline(threshold, color="#D55E00", lw=1.2)
    axes[1].axhline(m, color="#009E73", lw=1.2, ls="--")
    axes[1].set(title="sorted |w|", xlabel="rank", ylabel="|w|")
    axes[1].text(len(mags) - 1, threshold, "τ", color="#D55E00", ha="right", va="bottom",
                 fontsize=10)
    axes[1].text(len(mags) - 1, m, "m", color="#009E73", ha="right", va="bottom", fontsize=10)
    image = draw_weight_matrix(axes[2], ternary, title="ternary W")
    fig.colorbar(image, ax=axes[2], shrink=0.8)
    for ax in (axes[0], axes[2]):
        ax.set_xticks(range(w.shape[1]))
        ax.set_yticks(range(w.shape[0]))
    return fig


def plot_iteration(iterations: Sequence, index: int, *, dense_accuracy: float | None = None,
                   class_names: Sequence[str] | None = None) -> Figure:
    """Test accuracy per Q-SENN iteration (before / after fine-tuning) and iteration ``index``'s W."""
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1.3]})
    x = np.arange(len(iterations))
    start = [it.start_accuracy for it in iterations]
    after = [it.accuracy for it in iterations]
    axes[0].plot(x, start, "o--", color="#999999", label="new layer")
    axes[0].plot(x, after, "o-", color="#0072B2", label="fine-tuned")
    if dense_accuracy is not None:
        axes[0].axhline(dense_accuracy, color="#D55E00", lw=1, label="dense")
    axes[0].axvline(index, color="#000000", lw=0.8, alpha=0.4)
    axes[0].set(xticks=x, xlabel="iteration", ylabel="test accuracy", title="accuracy")
    axes[0].legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3,
                   frameon=False)
    it = iterations[index]
    image = draw_weight_matrix(axes[1], it.ternary.weight, class_names=class_names,
                               title=f"iteration {index}: m = {it.ternary.m:.2f}")
    fig.colorbar(image, ax=axes[1], shrink=0.8, label="weight")
    return fig


def plot_naming(results: dict, *, title: str = "feature names right") -> Figure:
    """Naming accuracy with its bootstrap interval beside chance, one bar per model."""
    fig, ax = plt.subplots(figsize=(4.2, 2.8), layout="constrained")
    names = list(results)
    acc = np.array([results[n].accuracy for n in names])
    err = np.array([[a - results[n].low, results[n].high - a] for n, a in zip(names, acc,
                                                                               strict=True)]).T
    ax.bar(names, acc, yerr=err, capsize=4, color="#0072B2", label="name right")
    for i, n in enumerate(names):
        ax.plot([i - 0.4, i + 0.4], [results[n].chance] * 2, color="#D55E00", lw=2,
                label="chance" if i == 0 else None)
    ax.set(ylim=(0, 1), ylabel="share of features", title=title)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig
