"""Figures of the USAM chapter: the three uncertainties, correction curves, costs, a click's masks."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..metrics.segmentation import mask_iou
from ..metrics.uncertainty import CorrectionCurve
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
    ax.set_title(title, fontsize=9)
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

    fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
    m_s, s_s, iou_s = run(small, points[:1])
    m_l, _, iou_l = run(large, points[:1])
    m_d, _, iou_d = run(small, points)
    best, chosen = int(iou_s.argmax()), int(s_s.argmax())
    panels = [
        (mask, "ground truth", points[:1]),
        (m_s[best], f"{size}, 1 click: IoU {iou_s[best]:.2f}", points[:1]),
        (m_l[int(iou_l.argmax())], f"{names[-1]}, 1 click: IoU {iou_l.max():.2f}", points[:1]),
        (m_d[int(iou_d.argmax())], f"{size}, dense: IoU {iou_d.max():.2f}", points),
        (m_s[chosen], f"chosen by score: IoU {iou_s[chosen]:.2f}", points[:1]),
        *[(m_s[j], f"mask {j + 1}: score {s_s[j]:.2f}, IoU {iou_s[j]:.2f}", points[:1])
          for j in range(3)],
    ]
    for ax, (m, title, pts) in zip(axes.flat, panels, strict=True):
        _mask_panel(ax, image, m, title, pts)
    fig.tight_layout()
    return fig


def plot_correction_curves(panels: Mapping[str, Mapping[str, CorrectionCurve]]) -> Figure:
    """One axis per panel; each method's mIoU against the corrected fraction (oracle dashed)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        others = [c for i, c in enumerate(PALETTE) if i != 3]
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
        ax.set_title(title)
        ax.set_xlabel("fraction corrected r")
    axes[0, 0].set_ylabel("mIoU")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_costs(seconds: Mapping[str, float]) -> Figure:
    """Horizontal bars: milliseconds per image of each method."""
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(seconds) + 1))
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
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
    axes[0].imshow(to_image(image))
    axes[0].scatter([x], [y], marker="*", s=120, c="white", edgecolors="black")
    axes[0].set_title(f"click ({x}, {y})", fontsize=9)
    axes[0].axis("off")
    chosen = int(out.scores[0].argmax())
    for j in range(3):
        lines = [f"score {out.scores[0, j]:.2f}" + ("  ← chosen" if j == chosen else "")]
        lines += [f"{n} {pred[n][0, j]:+.2f}" for n in ("model_gap", "prompt_gap", "task_gap")
                  if n in pred]
        _mask_panel(axes[j + 1], image, out.mask_logits[0, j] > 0, "\n".join(lines),
                    torch.tensor([[x, y]]))
    fig.tight_layout()
    return fig
