"""The small HTML table: cells, column order, missing cells and a column left out."""

import pytest

from companion.tables import Table


def test_table_formats_cells_and_keeps_the_column_order():
    t = Table({"a": {"x": 0.12345, "y": "text"}, "b": {"y": 3, "z": None}}, columns=["z", "y", "x"])
    html = t._repr_html_()
    assert html.index("<th>z</th>") < html.index("<th>y</th>") < html.index("<th>x</th>")
    assert "<td>0.123</td>" in html and "<td>3</td>" in html and html.count("<td>–</td>") == 3
    assert repr(t).splitlines()[1].split() == ["a", "–", "text", "0.123"]
    with pytest.raises(ValueError, match=r"leaves out \['x'\]"):
        Table({"a": {"x": 1.0, "y": 2.0}}, columns=["y"])
