"""The package's progress bar: ``tqdm.auto``, except that a finished ``leave=False`` bar in a notebook
is removed from the layout (``display: none``) instead of hidden.

tqdm hides such a bar with ``visibility: hidden`` and closes it. The hidden widget keeps its height,
so a saved notebook and the book's HTML show a blank gap of 60–90 px where it was. A bar removed
from the layout takes no room, live or saved. Import it as ``from companion.progress import tqdm``.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm as _auto_tqdm

__all__ = ["tqdm"]

try:
    from tqdm.notebook import tqdm_notebook
except ImportError:  # pragma: no cover - tqdm always ships it; ipywidgets decides whether it is used
    tqdm_notebook = None


def _removes_finished_bars(base: type) -> type:
    """A notebook bar class whose closing with ``leave=False`` takes the bar out of the layout."""

    class Bar(base):
        def display(self, *args: Any, close: bool = False, **kwargs: Any) -> None:
            container = getattr(self, "container", None)
            if close and container is not None:
                container.layout.display = "none"
                return
            super().display(*args, close=close, **kwargs)

    Bar.__name__ = Bar.__qualname__ = "tqdm"
    Bar.__doc__ = base.__doc__
    return Bar


tqdm = (_removes_finished_bars(_auto_tqdm)
        if tqdm_notebook is not None and issubclass(_auto_tqdm, tqdm_notebook) else _auto_tqdm)
