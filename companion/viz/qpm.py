"""Figures of the QPM chapter: A, R, b; the class–feature assignment; contrastive class pairs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..batches import to_numpy
from .figures import overlay_heatmap
from .style import PAGE_WIDTH

BOX = {"boxstyle": "round,pad=0.35", "fc": "#E8F1FA", "ec": "#0072B2"}
ARROW = {"arrowstyle": "-|>", "color": "#333333", "lw": 1.2}


def _matrix_icon(ax, values, x: float, y: float, w: float, h: float, cmap: str, label: str,
                 vmin: float = 0, vmax: float = 1) -> None:
    """A small matrix drawn at (x, y) (its centre) with a label under it."""
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, extent=(x - w / 2, x + w / 2, y - h / 2,
              y + h / 2), interpolation="nearest", zorder=2)
    ax.add_patch(plt.Rectangle((x - w / 2, y - h / 2), w, h, fill=False, ec="0.3", lw=0.8, zorder=3))
    ax.text(x, y - h / 2 - 0.06, label, ha="center", va="top")


def plot_qpm_idea(n_classes: int = 5, n_features: int = 8, k: int = 2, seed: int = 0) -> Figure:
    """QPM in one picture: the dense model's features give A, R and b; a binary program picks
    n_f features and k of them per class (unique rows); the backbone is fine-tuned under that W."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1, 1, (n_classes, n_features))
    R = np.abs(np.corrcoef(rng.normal(size=(n_features, 12))))
    b = rng.uniform(0.1, 1, n_features)
    keep = np.sort(np.argsort(-A.max(0))[:5])
    W = np.zeros((n_classes, len(keep)))
    for c in range(n_classes):  # k distinct features per class, rows all different
        W[c, [c % len(keep), (c + 1 + c // len(keep)) % len(keep)][:k]] = 1
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 3.2), layout="constrained")
    ax.set(xlim=(0, 7), ylim=(0.2, 3.4))
    ax.set_aspect("equal")
    ax.axis("off")
    # top row: dense model -> constants -> binary program
    ax.text(0.75, 2.75, "dense model\n$N$ features\nper image", ha="center", va="center",
            bbox=BOX)
    _matrix_icon(ax, A, 2.35, 2.85, 0.8, 0.5, "RdBu_r", "$A$: class fit", vmin=-1)
    _matrix_icon(ax, R, 3.45, 2.85, 0.5, 0.5, "viridis", "$R$: redundancy")
    ax.bar(4.25 + np.arange(n_features) * 0.07, b * 0.45, width=0.05, bottom=2.62, color="#0072B2",
           zorder=2)
    ax.text(4.5, 2.52, "$b$: locality", ha="center", va="top")
    ax.text(6.0, 2.75, "binary program\n$\\max\\ Z_A + Z_B - \\lambda Z_R$\n$n_f$ features,\n"
            "$k$ per class,\nunique rows", ha="center", va="center", bbox=BOX)
    for x0, x1 in ((1.45, 1.85), (4.95, 5.2)):
        ax.annotate("", xy=(x1, 2.8), xytext=(x0, 2.8), arrowprops=ARROW)
    # bottom row, right to left: the binary layer, then fine-tuning
    _matrix_icon(ax, W, 4.6, 1.25, 0.75, 0.75, "Greys", "$W \\in \\{0, 1\\}$: $k$ per class", vmax=1.4)
    ax.annotate("", xy=(5.1, 1.4), xytext=(6.0, 2.05), arrowprops=ARROW)
    ax.text(1.6, 1.25, "fine-tune the backbone\nunder the frozen $W$", ha="center", va="center",
            bbox=BOX)
    ax.annotate("", xy=(2.75, 1.25), xytext=(4.1, 1.25), arrowprops=ARROW)
    ax.text(4.6, 0.45, "each class = a short list of features", ha="center", va="center",
            style="italic")
    return fig


def plot_qpm_constants(similarity, redundancy, penalty, bias, *, tau: float | None = None
                       ) -> Figure:
    """Four panels: A (classes × features), R, the penalised pairs R̃ (≥ τ) and b per feature."""
    A, R, Rp, b = (to_numpy(x).astype(float) for x in (similarity, redundancy, penalty, bias))
    order = np.argsort(-A.max(0), kind="stable")
    fig, axes = plt.subplots(2, 2, figsize=(7.5, 6.4), layout="constrained")
    axes = axes.flat
    lim = np.abs(A).max()
    im = axes[0].imshow(A[:, order], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    axes[0].set(title="A: class–feature correlation", xlabel="feature (sorted by max A)",
                ylabel="class")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    full = R + R.T
    im = axes[1].imshow(full[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=1)
    axes[1].set(title="R: redundancy\n(cosine of A columns)", xlabel="feature", ylabel="feature")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    pen = Rp + Rp.T
    im = axes[2].imshow(pen[np.ix_(order, order)], cmap="magma", vmin=0,
                        vmax=max(pen.max(), 1e-9))
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    n_pairs = int((Rp > 0).sum())
    title = f"R̃: {n_pairs} penalised pairs"
    axes[2].set(title=title + (f"\n(R ≥ τ = {tau:.2f})" if tau is not None else ""),
                xlabel="feature", ylabel="feature")
    axes[3].bar(np.arange(len(b)), b[order], color="#0072B2")
    axes[3].set(title="b: locality bias", xlabel="feature", ylabel="b")
    for ax in axes[:3]:
        ax.grid(False)
    return fig


def plot_assignment(assignment, selected, *, class_names: Sequence[str] | None = None,
                    feature_names: Sequence[str] | None = None, highlight: Sequence[int] = (),
                    ax=None, title: str | None = None):
    """W restricted to the selected features: one row per class, a dot where W_cj = 1."""
    W = to_numpy(assignment)[:, to_numpy(selected)]
    n_c, n_f = W.shape
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH, 1.6 + 0.32 * n_f), 1.2 + 0.3 * n_c),
                               layout="constrained")
    ax.imshow(W, cmap="Greys", vmin=0, vmax=1.6, aspect="auto")
    for c in highlight:
        ax.axhspan(c - 0.5, c + 0.5, color="#E69F00", alpha=0.3)
    ax.set_yticks(range(n_c), class_names if class_names is not None else range(n_c), fontsize=9)
    labels = feature_names if feature_names is not None else [str(j) for j in to_numpy(selected)]
    ax.set_xticks(range(n_f), labels, fontsize=9, rotation=90)
    ax.set_xlabel("selected feature")
    ax.grid(False)
    ax.set_title(title or f"QPM assignment: {n_c} classes × {n_f} features,\n"
                 f"{int(W.sum(1).max())} per class")
    return ax.figure if own else ax


def plot_contrastive_pair(images, maps, labels, assignment, pair: tuple[int, int], *,
                          class_names: Sequence[str] | None = None) -> Figure:
    """Two classes that differ in few features: their rows of W and where each own feature fires."""
    W = to_numpy(assignment)
    c1, c2 = pair
    only = [np.flatnonzero((W[a] != 0) & (W[b] == 0)) for a, b in ((c1, c2), (c2, c1))]
    shared = np.flatnonzero((W[c1] != 0) & (W[c2] != 0))
    names = [class_names[c] if class_names is not None else str(c) for c in pair]
    fig, axes = plt.subplots(2, 1 + max(len(o) for o in only), squeeze=False,
                             figsize=(2.1 * (1 + max(len(o) for o in only)), 4.6),
                             layout="constrained")
    for r, (c, own) in enumerate(zip(pair, only, strict=True)):
        i = int(np.flatnonzero(to_numpy(labels) == c)[0])
        axes[r, 0].imshow(np.transpose(to_numpy(images[i]), (1, 2, 0)))
        axes[r, 0].set_title(names[r])
        axes[r, 0].set_axis_off()
        for col in range(1, axes.shape[1]):
            if col - 1 < len(own):
                j = own[col - 1]
                overlay_heatmap(images[i], to_numpy(maps[i, j]), ax=axes[r, col],
                                title=f"only '{names[r]}': feature {j}")
            else:
                axes[r, col].set_axis_off()
    fig.suptitle(f"'{names[0]}' vs '{names[1]}': shared features {', '.join(map(str, shared))}")
    return fig


def plot_solver_knobs(problem, *, n_features: int, per_class: int, penalty: float,
                        class_names: Sequence[str] | None = None, time_limit: float = 10.0
                        ) -> Figure:
    """Re-solve ``problem`` (a ``QPMProblem``) with the given knobs and draw the new assignment."""
    from ..solvers.qpm import NotProvenOptimalWarning, solve_assignment

    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 4.4), layout="constrained")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotProvenOptimalWarning)
            res = solve_assignment(problem.similarity, problem.redundancy, problem.bias,
                                   n_features=n_features, per_class=per_class, penalty=penalty,
                                   time_limit=time_limit, progress=False)
    except ValueError as err:  # e.g. k > n_f, or too few distinct k-subsets
        ax.text(0.5, 0.5, str(err), ha="center", va="center", wrap=True, fontsize=9)
        ax.set_axis_off()
        return fig
    n_pen = int((np.triu(problem.redundancy, 1)[np.ix_(res.selected, res.selected)] > 0).sum())
    plot_assignment(res.assignment, res.selected, class_names=class_names, ax=ax,
                    title=f"$n_f$={n_features}, $k$={per_class}, $\\lambda$={penalty:g}: "
                          f"{res.status}, objective {res.objective:.1f}, gap {res.gap:.2%},\n"
                          f"{n_pen} penalised pairs chosen, {res.seconds:.1f} s")
    return fig
