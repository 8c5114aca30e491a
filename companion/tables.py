"""A small table that renders as HTML in Jupyter and the book, and as aligned text elsewhere."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Table"]

WIDE_COLUMNS = 8  # more columns than this: compact cells, upright column names
NUMERIC = re.compile(r"^[\s\d.,:%×+\-−–±\[\]()]*$")  # numbers, percentages, intervals, "–"


@dataclass(frozen=True)
class Table:
    """Rows of cells under a header; the first column names the row."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def __post_init__(self):
        bad = [i for i, r in enumerate(self.rows) if len(r) != len(self.header)]
        if bad:
            raise ValueError(f"Every row needs {len(self.header)} cells (one per header "
                             f"column); rows {bad} do not.")

    @classmethod
    def of(cls, header: Sequence[str], rows: Sequence[Sequence[object]],
           caption: str = "") -> Table:
        """A table from any cell values (turned into text)."""
        return cls(tuple(map(str, header)), tuple(tuple(map(str, r)) for r in rows), caption)

    @classmethod
    def from_rows(cls, rows: Mapping[str, Mapping[str, object]], corner: str = "",
                  caption: str = "", *, columns: Sequence[str] | None = None,
                  precision: int = 3) -> Table:
        """A table from ``{row name: {column: value}}`` (``columns``: their order).

        Floats are shown with ``precision`` decimals; a missing cell or None shows as "–".
        """
        found = list(dict.fromkeys(c for cells in rows.values() for c in cells))
        columns = found if columns is None else list(columns)
        left_out = set(found) - set(columns)
        if left_out:
            raise ValueError(f"columns leaves out {sorted(left_out)}, which rows hold.")

        def text(value: object) -> str:
            if value is None:
                return "–"
            return f"{value:.{precision}f}" if isinstance(value, float) else str(value)

        return cls.of([corner, *columns],
                      [[name, *(text(cells.get(c)) for c in columns)] for name, cells in rows.items()],
                      caption)

    def _right_aligned(self) -> list[bool]:
        """Columns of numbers are aligned right; the row names and columns of words, left."""
        return [j > 0 and all(NUMERIC.match(r[j]) for r in self.rows)
                for j in range(len(self.header))]

    def _repr_html_(self) -> str:
        right = self._right_aligned()
        # a wide table (a correlation matrix, one column per layer) is set compactly, with its
        # column names turned upright, so that it fits the page's column
        wide = len(self.header) > WIDE_COLUMNS
        pad = "0.1em 0.25em" if wide else "0.15em 0.6em"

        def cell(tag: str, text: str, j: int, head: bool = False) -> str:
            align = "right" if right[j] else "left"
            turn = ";writing-mode:vertical-rl;transform:rotate(180deg)" if wide and head and j else ""
            return (f"<{tag} style='text-align:{align};padding:{pad}{turn}'>"
                    f"{html.escape(text)}</{tag}>")

        head = "".join(cell("th", h, j, head=True) for j, h in enumerate(self.header))
        body = "".join("<tr>" + "".join(cell("th" if j == 0 else "td", c, j)
                                        for j, c in enumerate(r)) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        size = " style='font-size:0.85em'" if wide else ""
        return f"<table{size}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        cols = list(zip(self.header, *self.rows, strict=True))
        widths = [max(len(c) for c in col) for col in cols]
        lines = [self.caption] if self.caption else []
        right = self._right_aligned()
        for r in (self.header, *self.rows):
            lines.append("  ".join(c.rjust(w) if right[j] else c.ljust(w)
                                   for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        return "\n".join(lines)
