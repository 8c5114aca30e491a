"""Explorers: a pure figure function behind ipywidgets controls, live in Jupyter, a picture in the HTML."""

from __future__ import annotations

import base64
import io
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["Explorer", "interactive_figure", "static_figure"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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


def _png(fig: Figure) -> str:
    """A figure as base64 PNG text, as notebook outputs hold it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Explorer(widgets.VBox):
    """Controls above a figure that redraws; its display bundle also carries the figure as a PNG.

    Jupyter and Colab show the live widget (the widget view outranks an image); the book's HTML
    prefers ``image/png`` (``nb_mime_priority_overrides`` in ``_config.yml``), so a reader of the
    static page sees the figure once, as a picture, and not an explorer that cannot redraw.
    """

    png: str = ""  # the figure last drawn, base64

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        base = getattr(super(), "_repr_mimebundle_", None)  # ipywidgets 8
        bundle = dict(base(**kwargs) or {}) if base else {
            "text/plain": repr(self),
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.model_id}}
        if self.png:
            bundle["image/png"] = self.png
        return bundle

    def _ipython_display_(self, **kwargs: Any) -> None:
        """ipywidgets 7 (Colab) displays widgets through this hook: show the same bundle."""
        from IPython.display import display

        display(self._repr_mimebundle_(**kwargs), raw=True)


def interactive_figure(fn: Callable[..., Figure], **controls: Any) -> Explorer:
    """The controls above an output that shows ``fn(**values)``, redrawn whenever a control changes.

    ``controls`` are ipywidgets with a ``value`` (sliders, dropdowns …) or fixed plain values.
    The figure for the initial values is drawn at once (an error there is raised), so the saved
    notebook already holds a picture; later errors are shown in the output. Displayed, the explorer
    is live in Jupyter and Colab and a still image in the book's HTML: draw no separate static copy.
    Works with ipywidgets 7.7 (Colab) and 8.
    """
    active = [c for c in controls.values() if isinstance(c, widgets.Widget)]
    if any(not hasattr(c, "value") for c in active):
        raise TypeError("Every widget passed to interactive_figure needs a value (a slider, "
                        "dropdown, checkbox …).")
    out = widgets.Output()
    explorer = Explorer([*active, out])

    def draw() -> None:
        fig = static_figure(fn, **controls)
        try:
            explorer.png = _png(fig)
            out.outputs = ({"output_type": "display_data", "metadata": {},
                            "data": {"image/png": explorer.png, "text/plain": repr(fig)}},)
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
    return explorer
