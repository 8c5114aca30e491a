"""Static figures shared by the chapters: images from tensors, image grids and heat-map overlays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .style import HEATMAP_CMAP

__all__ = ["to_image", "resize_heatmap", "image_grid", "overlay_heatmap"]


def _as_array(x: Any) -> np.ndarray:
    """A NumPy array from a tensor (any device, any float type) or an array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()  # numpy has no bfloat16
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"Expected a tensor or an array, got {type(x).__name__}.") from err


def _channels_last(a: np.ndarray, channels_first: bool) -> np.ndarray:
    """``(H, W, C)`` with C in {1, 3} from a 2-D or 3-D array; tensors are read as CHW first."""
    if a.ndim == 2:
        return a[..., None]
    if a.ndim == 3:
        first, last = a.shape[0] in (1, 3), a.shape[-1] in (1, 3)
        if first and (channels_first or not last):
            return np.moveaxis(a, 0, -1)
        if last:
            return a
    raise ValueError(f"Expected one grey or RGB image of shape (H, W), (C, H, W) or (H, W, C) with "
                     f"C = 1 or 3, got shape {a.shape}; index a batch (x[0]) or drop extra channels.")


def to_image(x: Any, *, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> np.ndarray:
    """One image as an ``(H, W, 3)`` float array in [0, 1], ready for ``imshow``.

    Accepts a tensor or an array, CHW or HWC (tensors are read as CHW when both fit), grey or RGB.
    ``mean``/``std`` undo a normalisation first; integer images are divided by 255; float images
    outside [0, 1] are rescaled to their own minimum and maximum.
    """
    a = _channels_last(_as_array(x), channels_first=isinstance(x, torch.Tensor))
    integer = np.issubdtype(a.dtype, np.integer)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("The image holds NaN or infinite values.")
    if std is not None:
        a = a * np.asarray(std, dtype=np.float64)
    if mean is not None:
        a = a + np.asarray(mean, dtype=np.float64)
    if integer and mean is None and std is None:
        a = a / 255.0
    elif a.size and (a.min() < 0 or a.max() > 1):
        span = a.max() - a.min()
        a = (a - a.min()) / span if span > 0 else np.zeros_like(a)
    a = np.clip(a, 0.0, 1.0)
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def resize_heatmap(heat: Any, size: tuple[int, int]) -> np.ndarray:
    """A heat map ``(h, w)``, ``(1, h, w)`` or ``(h, w, 1)`` resized bilinearly to ``size = (H, W)``."""
    a = _as_array(heat)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"Expected one heat map of shape (h, w), (1, h, w) or (h, w, 1), got "
                         f"shape {a.shape}; select one map (e.g. maps[i, feature]).")
    t = torch.as_tensor(np.asarray(a, dtype=np.float32))[None, None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return t[0, 0].numpy()


def image_grid(images: Any, titles: Sequence[str] | None = None, ncols: int = 8, *,
               size: float = 1.6, suptitle: str | None = None,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Figure:
    """A grid of images (a list, or a batch ``(N, C, H, W)``/``(N, H, W, C)``) with optional titles."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim != 4:
        raise ValueError(f"A batch of images must have 4 dimensions (N, C, H, W) or (N, H, W, C), "
                         f"got shape {tuple(images.shape)}; pass a list for single images.")
    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Got {len(titles)} titles for {len(images)} images.")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(suptitle)),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            fig.delaxes(ax)
            continue
        ax.imshow(to_image(images[i], mean=mean, std=std))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]))
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def overlay_heatmap(image: Any, heat: Any, ax: Axes | None = None, alpha: float = 0.5,
                    cmap: str = HEATMAP_CMAP, *, vmin: float | None = None,
                    vmax: float | None = None, title: str | None = None,
                    mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> Axes:
    """Draw ``heat`` (resized to the image) over ``image`` on ``ax`` (default: the current axes)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    img = to_image(image, mean=mean, std=std)
    ax = plt.gca() if ax is None else ax
    ax.imshow(img)
    ax.imshow(resize_heatmap(heat, img.shape[:2]), cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax,
              interpolation="bilinear")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax
