"""Explorers: a pure figure function behind ipywidgets controls, plus its static figure for the page."""

from __future__ import annotations

import base64
import io
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["interactive_figure", "static_figure"]


def _values(controls: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the figure function: widget values, plain values as they are."""
    return {k: c.value if isinstance(c, widgets.Widget) else c for k, c in controls.items()}


def static_figure(fn: Callable[..., Figure], **controls: Any) -> Figure:
    """``fn`` called with the controls' current values (widgets or plain values): the static picture."""
    fig = fn(**_values(controls))
    if not isinstance(fig, Figure):
        raise TypeError(f"{getattr(fn, '__name__', fn)} must return a matplotlib Figure, got "
                        f"{type(fig).__name__}.")
    return fig


def _png_output(fig: Figure) -> dict:
    """A figure as a notebook ``display_data`` output holding a PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                     "text/plain": repr(fig)}}


def interactive_figure(fn: Callable[..., Figure], **controls: Any) -> widgets.Widget:
    """The controls above an output that shows ``fn(**values)``, redrawn whenever a control changes.

    ``controls`` are ipywidgets with a ``value`` (sliders, dropdowns …) or fixed plain values.
    The figure for the initial values is drawn at once (an error there is raised), so the saved
    widget state already holds a picture; later errors are shown in the output. Works with
    ipywidgets 7.7 (Colab) and 8. Pair it with :func:`static_figure` for the static page.
    """
    active = [c for c in controls.values() if isinstance(c, widgets.Widget)]
    if any(not hasattr(c, "value") for c in active):
        raise TypeError("Every widget passed to interactive_figure needs a value (a slider, "
                        "dropdown, checkbox …).")
    out = widgets.Output()

    def draw() -> None:
        fig = static_figure(fn, **controls)
        try:
            out.outputs = (_png_output(fig),)
        finally:
            plt.close(fig)

    def redraw(_change: Any = None) -> None:
        try:
            draw()
        except Exception:  # keep the explorer alive and show what went wrong
            out.outputs = ({"output_type": "stream", "name": "stderr",
                            "text": traceback.format_exc()},)

    draw()
    for control in active:
        control.observe(redraw, names="value")
    return widgets.VBox([*active, out])
