"""Figures: one style, images from tensors, image grids, heat-map overlays and widget explorers."""

from .figures import image_grid, overlay_heatmap, resize_heatmap, to_image
from .style import HEATMAP_CMAP, PALETTE, use_style
from .widgets import interactive_figure, static_figure

__all__ = ["HEATMAP_CMAP", "PALETTE", "image_grid", "interactive_figure", "overlay_heatmap",
           "resize_heatmap", "static_figure", "to_image", "use_style"]
