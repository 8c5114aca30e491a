"""Boxes and arrows for the chapters' "idea in one picture" diagrams, drawn in data coordinates."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch

__all__ = ["diagram_arrow", "diagram_box"]


def diagram_box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str) -> None:
    """A rounded box with its lower-left corner at (x, y) and ``text`` centred in it."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                fc=colour, ec="black", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)


def diagram_arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float],
                  colour: str = "black", text: str = "") -> None:
    """An arrow from ``start`` to ``end``, with ``text`` to the right of its middle."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.2, shrinkA=0, shrinkB=0))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.12, (start[1] + end[1]) / 2, text, fontsize=10,
                ha="left", va="center", color=colour)
