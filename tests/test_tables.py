"""The HTML/text table of result objects."""

import pytest

from companion.tables import Table


def test_table_renders_every_cell_escaped_and_aligned():
    t = Table.of(["method", "AUC"], [["USAM", 0.5], ["<b>", 12]], caption="relative AUC")
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "&lt;b&gt;" in html and "<caption>relative AUC" in html
    assert ">0.5</td>" in html and ">12</td>" in html
    lines = repr(t).splitlines()
    assert lines[0] == "relative AUC" and lines[1].startswith("method")
    assert len({len(line) for line in lines[1:]}) == 1  # columns padded to one width


def test_table_from_named_rows_fills_missing_cells():
    t = Table.from_rows({"SLDD": {"acc": "95%", "k": 4}, "Q-SENN": {"acc": "94%"}}, corner="model")
    assert t.header == ("model", "acc", "k")
    assert t.rows == (("SLDD", "95%", "4"), ("Q-SENN", "94%", "–"))


def test_table_from_rows_formats_cells_and_keeps_the_column_order():
    t = Table.from_rows({"a": {"x": 0.12345, "y": "text"}, "b": {"y": 3, "z": None}},
                        columns=["z", "y", "x"])
    assert t.header == ("", "z", "y", "x")
    assert t.rows == (("a", "–", "text", "0.123"), ("b", "–", "3", "–"))
    with pytest.raises(ValueError, match=r"leaves out \['x'\]"):
        Table.from_rows({"a": {"x": 1.0, "y": 2.0}}, columns=["y"])


def test_numbers_align_right_and_words_left():
    t = Table.of(["model", "acc", "names"], [["SLDD", "95.1%", "red / blue"], ["Q-SENN", "[1, 2]", "x"]])
    html = t._repr_html_()
    assert "text-align:right;padding:0.15em 0.6em'>95.1%" in html
    assert "text-align:left;padding:0.15em 0.6em'>red / blue" in html


def test_a_wide_table_is_set_compactly_with_upright_column_names():
    wide = Table.of(["layer", *range(1, 13)], [["kept", *(["0.50"] * 12)]])._repr_html_()
    assert "font-size:0.85em" in wide and wide.count("writing-mode:vertical-rl") == 12
    narrow = Table.of(["a", "b"], [["x", "1"]])._repr_html_()
    assert "writing-mode" not in narrow and "font-size" not in narrow
