"""Figures of the USAM chapter: the method's diagram, the three uncertainties, prompts, correction
curves, costs and a click's masks. Every figure is at most 7.5 in wide with at most three panels in
a row, so its text stays legible in the book's 700 px column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..metrics.segmentation import mask_iou
from ..metrics.uncertainty import CorrectionCurve
from .diagram import diagram_arrow, diagram_box
from .figures import to_image
from .style import PALETTE


def _mask_panel(ax, image: torch.Tensor, mask: torch.Tensor, title: str,
                points: torch.Tensor | None = None) -> None:
    m = mask.bool().numpy()
    ax.imshow(to_image(image))
    ax.imshow(np.ma.masked_where(~m, np.ones(m.shape)), cmap="cool", alpha=0.45, vmin=0, vmax=1)
    if m.any() and not m.all():
        ax.contour(m, levels=[0.5], colors="white", linewidths=1.2)
    if points is not None:
        ax.scatter(points[:, 0], points[:, 1], marker="*", s=90, c="white", edgecolors="black",
                   linewidths=0.8)
    ax.set_title(title, fontsize=10)
    ax.axis("off")


@torch.inference_mode()
def plot_three_uncertainties(segmenters: Mapping[str, torch.nn.Module], image: torch.Tensor,
                             mask: torch.Tensor, points: torch.Tensor,
                             size: str | None = None) -> Figure:
    """One instance, three gaps for ``size`` (default: the smallest): model, prompt and task."""
    names = list(segmenters)
    size = size or names[0]
    small, large = segmenters[size], segmenters[names[-1]]

    def run(model, pts):
        out = model(image[None], pts[None])
        iou = mask_iou(out.mask_logits > 0, mask[None, None])[0]
        return out.mask_logits[0] > 0, out.scores[0], iou

    fig, axes = plt.subplots(3, 3, figsize=(6.6, 7.0))
    m_s, s_s, iou_s = run(small, points[:1])
    m_l, _, iou_l = run(large, points[:1])
    m_d, _, iou_d = run(small, points)
    best, chosen = int(iou_s.argmax()), int(s_s.argmax())
    rows = {
        "model": [(mask, "ground truth", points[:1]),
                  (m_s[best], f"{size}: IoU {iou_s[best]:.2f}", points[:1]),
                  (m_l[int(iou_l.argmax())], f"{names[-1]}: IoU {iou_l.max():.2f}", points[:1])],
        "prompt": [(mask, "ground truth", points),
                   (m_s[best], f"1 click: IoU {iou_s[best]:.2f}", points[:1]),
                   (m_d[int(iou_d.argmax())], f"{len(points)} clicks: IoU {iou_d.max():.2f}",
                    points)],
        "task": [(m_s[j], f"mask {j + 1}" + (" (chosen)" if j == chosen else "")
                  + f"\ns {s_s[j]:.2f}, IoU {iou_s[j]:.2f}", points[:1]) for j in range(3)],
    }
    for ax_row, (gap, panels) in zip(axes, rows.items(), strict=True):
        for ax, (m, title, pts) in zip(ax_row, panels, strict=True):
            _mask_panel(ax, image, m, title, pts)
        ax_row[0].text(-0.12, 0.5, f"{gap} gap", transform=ax_row[0].transAxes, rotation=90,
                       ha="right", va="center", fontsize=10, weight="bold")
    fig.tight_layout()
    return fig


def plot_correction_curves(panels: Mapping[str, Mapping[str, CorrectionCurve]]) -> Figure:
    """Two panels a row; each method's mIoU against the corrected fraction (oracle dashed), one
    legend below the panels."""
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, 2.9 * nrows + 0.9), squeeze=False)
    others = [c for i, c in enumerate(PALETTE) if i != 3]
    for ax, (title, curves) in zip(axes.flat, panels.items(), strict=False):
        k = 0
        for name, curve in curves.items():
            if name == "oracle":
                style = dict(ls="--", c="black")
            elif name == "random":
                style = dict(ls=":", c="grey")
            elif name.startswith("USAM"):
                style = dict(c=PALETTE[3], lw=2.5)
            else:
                style, k = dict(c=others[k % len(others)], lw=1.1), k + 1
            ax.plot(curve.ratios, curve.miou, label=name, **style)
        ax.set_title(f"{title} panel")
        ax.set_xlabel("fraction corrected r")
        ax.set_ylabel("mIoU")
    for ax in axes.flat[len(panels):]:
        ax.remove()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.9 / (2.9 * nrows + 0.9), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncols=5, fontsize=10,
               bbox_to_anchor=(0.5, 0.0))
    return fig


def plot_prompts(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                 dense: Sequence[torch.Tensor], titles: Sequence[str]) -> Figure:
    """Up to three instances: the mask's outline, its dense clicks and the centre click c."""
    fig, axes = plt.subplots(1, len(images), figsize=(2.3 * len(images), 2.7), squeeze=False)
    for ax, image, mask, pts, title in zip(axes[0], images, masks, dense, titles, strict=True):
        ax.imshow(to_image(image))
        ax.contour(torch.as_tensor(mask).numpy(), levels=[0.5], colors="white")
        ax.scatter(*pts[1:].T, c="orange", s=14, label="extra clicks")
        ax.scatter(*pts[:1].T, marker="*", c="red", s=110, label="centre click c")
        ax.set_title(title)
        ax.axis("off")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncols=2)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def plot_answers(data, instances: Sequence[int], titles: Sequence[str]) -> Figure:
    """Up to three scenes: one instance's centre click and the outline of every instance under it.

    ``data`` is an :class:`~companion.data.ambiguous_shapes.AmbiguousShapes`; each outline is one
    valid answer to that click, so a click with more outlines than the segmenter's three masks
    cannot be resolved by the choice of a mask.
    """
    from ..data.prompts import centre_click

    fig, axes = plt.subplots(1, len(instances), figsize=(2.3 * len(instances), 2.8), squeeze=False)
    for ax, i, title in zip(axes[0], instances, titles, strict=True):
        x, y = centre_click(data.masks[i:i + 1])[0].long().tolist()
        scene = int(data.image_index[i])
        ax.imshow(to_image(data.images[scene]))
        holders = [j for j in (data.image_index == scene).nonzero()[:, 0].tolist()
                   if data.masks[j, y, x]]
        for k, j in enumerate(sorted(holders, key=lambda j: int(data.masks[j].sum()))):
            ax.contour(data.masks[j].numpy(), levels=[0.5], colors=PALETTE[k % len(PALETTE)],
                       linewidths=1.6)
        ax.scatter([x], [y], marker="*", c="white", edgecolors="black", s=130, linewidths=0.8)
        ax.set_title(f"{title}: {len(holders)} answer{'s' * (len(holders) > 1)}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_method() -> Figure:
    """The method in one picture: a SAM-style segmenter (grey), its IoU token and three mask
    tokens (blue), the USAM heads (orange) that give each mask its gaps, and what each gap is for."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    ax.set(xlim=(0, 15.2), ylim=(0, 8.9))
    ax.axis("off")
    grey, blue, orange, green = "#e6e6e6", "#cfe3f3", "#f8d9b0", "#d5ecd4"
    diagram_box(ax, 0.05, 5.6, 1.5, 1.1, "image\n$x_I$", grey)
    diagram_box(ax, 0.05, 1.6, 1.5, 1.1, "click $c$", grey)
    diagram_box(ax, 1.9, 5.6, 1.5, 1.1, "image\nencoder", grey)
    diagram_box(ax, 1.9, 1.6, 1.5, 1.1, "prompt\nencoder", grey)
    diagram_box(ax, 3.75, 1.2, 1.6, 5.9, "two-way\ntrans-\nformer\ndecoder", grey)
    diagram_box(ax, 3.75, 7.6, 1.6, 1.0, "output\ntokens", grey)
    for a, b in [((1.55, 6.15), (1.9, 6.15)), ((1.55, 2.15), (1.9, 2.15)),
                 ((3.4, 6.15), (3.75, 6.15)), ((3.4, 2.15), (3.75, 2.15)),
                 ((4.55, 7.6), (4.55, 7.1))]:
        diagram_arrow(ax, a, b)
    # the IoU token gives the scores, mask token j gives mask j
    diagram_box(ax, 5.7, 5.9, 1.6, 1.1, "IoU\ntoken", blue)
    diagram_box(ax, 5.7, 7.6, 1.6, 1.0, "scores $s_j$", grey)
    diagram_arrow(ax, (5.35, 6.45), (5.7, 6.45))
    diagram_arrow(ax, (6.5, 7.0), (6.5, 7.6))
    ys = (4.3, 2.75, 1.2)
    for j, y in enumerate(ys, start=1):
        diagram_box(ax, 5.7, y, 1.6, 1.1, f"mask\ntoken {j}", blue)
        diagram_arrow(ax, (5.35, y + 0.55), (5.7, y + 0.55))
        diagram_box(ax, 7.6, y, 2.1, 1.1, f"$l_{j}$ =\n[IoU ; mask {j}]", orange)
        diagram_arrow(ax, (7.3, y + 0.55), (7.6, y + 0.55), PALETTE[3])
        diagram_arrow(ax, (7.3, 6.2), (7.6, y + 0.95), PALETTE[3])
    ax.text(6.5, 0.6, "mask $j$ is made\nfrom token $j$", ha="center", va="center", fontsize=9)
    # one MLP per target reads every l_j: each mask gets its own gaps
    diagram_box(ax, 10.0, 1.2, 1.8, 4.2, "one MLP\nper target,\nrun on\neach $l_j$", orange)
    for y in ys:
        diagram_arrow(ax, (9.7, y + 0.55), (10.0, y + 0.55), PALETTE[3])
    uses = [(r"$\Delta^*_\Theta$: escalate to" "\n" "the large model", 4.75),
            (r"$\Delta^*_{XP}$: ask for" "\n" "another click", 3.4),
            (r"$\Delta^*_A$: pick another" "\n" "mask, drop a label", 2.05),
            (r"IoU$^*$: the quality" "\n" "of mask $j$", 0.7)]
    for label, y in uses:
        diagram_box(ax, 12.15, y, 3.0, 1.1, label, green)
        diagram_arrow(ax, (11.8, 3.3), (12.15, y + 0.55), PALETTE[3])
    ax.text(13.65, 6.5, "what each\ngap is for", ha="center", va="center", fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def plot_costs(seconds: Mapping[str, float]) -> Figure:
    """Horizontal bars: milliseconds per image of each method."""
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(seconds) + 1))
    names = list(seconds)
    ax.barh(names, [1000 * seconds[n] for n in names], color=PALETTE[0])
    ax.invert_yaxis()
    ax.set_xlabel("ms per image")
    fig.tight_layout()
    return fig


@torch.inference_mode()
def plot_click(segmenter, heads, image: torch.Tensor, x: int, y: int) -> Figure:
    """Click (x, y) on ``image``: the three masks, their scores and USAM's predictions per mask."""
    out = segmenter(image[None], torch.tensor([[[float(x), float(y)]]]))
    pred = heads.predict(out.iou_token, out.mask_tokens)
    # constrained layout leaves room for the four-line titles above the lower row
    fig, axes = plt.subplots(2, 2, figsize=(5.6, 6.8), layout="constrained")
    axes = axes.ravel()
    axes[0].imshow(to_image(image))
    axes[0].scatter([x], [y], marker="*", s=120, c="white", edgecolors="black")
    axes[0].set_title(f"click ({x}, {y})", fontsize=10)
    axes[0].axis("off")
    chosen = int(out.scores[0].argmax())
    for j in range(3):
        lines = [f"score {out.scores[0, j]:.2f}" + ("  ← chosen" if j == chosen else "")]
        lines += [f"{n.replace('_', ' ')} {pred[n][0, j]:+.2f}"
                  for n in ("model_gap", "prompt_gap", "task_gap") if n in pred]
        _mask_panel(axes[j + 1], image, out.mask_logits[0, j] > 0, "\n".join(lines),
                    torch.tensor([[x, y]]))
    return fig


def plot_use(use, *, xlabel: str, ylabel: str, x=None, points: Mapping[str, tuple] | None = None,
             title: str = "") -> Figure:
    """One use of the gaps: a curve per ranking (``use.curves``) against ``x`` (default: the
    fractions acted on), with single operating ``points`` (label: (x, y)) marked; legend outside."""
    x = use.fractions if x is None else np.asarray(x)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    styles = {"random": dict(color="grey", ls="--")}
    for i, (name, y) in enumerate(use.curves.items()):
        ax.plot(x, y, label=name, lw=1.8, **styles.get(name, dict(color=PALETTE[i % len(PALETTE)])))
    for i, (label, (px, py)) in enumerate((points or {}).items()):
        ax.scatter([px], [py], marker="osD^"[i % 4], s=50, zorder=3, color="black", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig
