"""A small table of named rows: HTML in Jupyter, aligned text elsewhere (no pandas needed)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Table"]


class Table:
    """Rows ``{row name: {column: value}}`` (``columns``: their order); missing cells show as "–"."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any]], precision: int = 3,
                 columns: Sequence[str] | None = None):
        self.rows = {str(k): dict(v) for k, v in rows.items()}
        found = list(dict.fromkeys(c for row in self.rows.values() for c in row))
        self.columns = found if columns is None else list(columns)
        missing = set(found) - set(self.columns)
        if missing:
            raise ValueError(f"columns leaves out {sorted(missing)}, which rows hold.")
        self.precision = int(precision)

    def cell(self, value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.{self.precision}f}"
        return str(value)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            + "".join(f"<td>{html.escape(self.cell(row.get(c)))}</td>" for c in self.columns)
            + "</tr>" for name, row in self.rows.items())
        return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        names = [""] + list(self.rows)
        grid = [self.columns] + [[self.cell(r.get(c)) for c in self.columns]
                                 for r in self.rows.values()]
        first = max(len(n) for n in names) + 2
        widths = [max(len(row[j]) for row in grid) + 2 for j in range(len(self.columns))]
        return "\n".join(f"{n:{first}s}" + "".join(f"{c:>{w}s}" for c, w in zip(row, widths,
                                                                               strict=True))
                         for n, row in zip(names, grid, strict=True))
