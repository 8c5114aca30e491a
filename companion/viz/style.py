"""One figure style for the whole book: fonts, spines, colours and the heat-map colormap."""

from __future__ import annotations

import matplotlib as mpl
from matplotlib import cycler

__all__ = ["HEATMAP_CMAP", "PAGE_WIDTH", "PALETTE", "STYLE", "use_style"]

PAGE_WIDTH = 7.0
"""Width (inches) of a figure that fills the book's ~700 px content column: at this width the
style's 10 pt text stays at 10 pt on the page; wider figures are scaled down, and their text with
them (a 9-inch figure's 7 pt labels end up at 5 pt)."""

HEATMAP_CMAP = "turbo"
"""Colormap of heat maps (feature maps, saliency, uncertainty) overlaid on images."""

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
"""Okabe–Ito colours, distinguishable with the common colour-vision deficiencies."""

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "figure.figsize": (6.0, 4.0),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": cycler(color=PALETTE),
    "image.cmap": HEATMAP_CMAP,
    "image.interpolation": "nearest",
}


def use_style() -> None:
    """Apply the book's matplotlib style (call once at the top of a chapter)."""
    mpl.rcParams.update(STYLE)
