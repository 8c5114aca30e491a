"""The page checks of `.ci/page_checks.py` on small rendered-HTML snippets: each one can fail."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))

import page_checks as pc  # noqa: E402


def png(seed: int, size: tuple[int, int] = (120, 80)) -> bytes:
    """A PNG of random blocks (distinct seeds give distinct figures)."""
    blocks = np.random.default_rng(seed).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blocks).resize(size, Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def cell(source: str = "x = 1", output: str = "", tags: str = "") -> str:
    return (f'<div class="cell {tags}"><div class="cell_input"><div class="highlight"><pre>{source}'
            f'</pre></div></div><div class="cell_output">{output}</div></div>')


def stream(text: str, kind: str = "stream") -> str:
    return f'<div class="output {kind}"><div class="highlight"><pre>{text}</pre></div></div>'


def page(*cells: str, title: str = "Chapter — Book", heading: str = "Chapter",
         tmp: Path | None = None) -> pc.Page:
    html = (f"<html><head><title>{title}</title></head><body><nav><h1>Book</h1></nav><article>"
            f'<h1>{heading}<a class="headerlink">#</a></h1><h2>1. First<a>#</a></h2>{"".join(cells)}'
            "</article></body></html>")
    return pc.Page.parse(html, (tmp or Path("/nonexistent")) / "chapter.html", "chapter")


FIGURE = f'<img src="{data_uri(png(0))}" data-natural-width="120">'


def messages(problems: list[pc.Problem]) -> list[str]:
    return [str(problem) for problem in problems]


def test_a_clean_chapter_passes_every_check() -> None:
    clean = page(cell("print(1)", stream("1\n")), cell("plot()", FIGURE))
    assert pc.check(clean) == []


def test_title_must_name_the_heading() -> None:
    assert pc.check_title(page(FIGURE, title="Other — Book")) != []
    assert pc.check_title(page(FIGURE)) == []


def test_a_traceback_is_reported_with_its_cell() -> None:
    problems = pc.check_errors(page(cell(), cell("1/0", stream("Traceback (most recent call last):\n"))))
    assert messages(problems) == ["chapter: cell 2 (§1. First): shows 'Traceback (most recent call last)'"]


@pytest.mark.parametrize("output", [
    stream("oops\n", kind="stderr"),
    stream("x.py:3: UserWarning: To copy construct from a tensor\n"),
    stream("loaded /home/anna/data/cub\n"),
    stream("from .venv/lib/python3.11/site-packages/torch\n"),
    stream("Running HiGHS 1.16.0 (git hash: f3f113d): Copyright (c) 2026\n"),
])
def test_stderr_warnings_and_machine_paths_fail(output: str) -> None:
    problems = pc.check_clean_outputs(page(cell("run()", output)))
    assert len(problems) == 1 and problems[0].where == "cell 1 (§1. First)"


def test_clean_output_text_passes() -> None:
    assert pc.check_clean_outputs(page(cell("run()", stream("accuracy 0.91 at 5/class\n")))) == []


def test_a_markdown_table_printed_as_text_fails_also_after_smartquotes() -> None:
    table = "<p>| a | b |\n|—|—|\n| 1 | 2 |</p>"
    problems = pc.check_markdown_tables(page(cell("show()", table)))
    assert [(p.where, p.line) for p in problems] == [("cell 1 (§1. First)", 1)]
    plain = "<p>| a | b |\n|---|:--:|</p>"
    assert len(pc.check_markdown_tables(page(cell("show()", plain)))) == 1
    html_table = "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>"
    assert pc.check_markdown_tables(page(cell("show()", html_table + stream("a | b\n")))) == []


def test_lines_over_80_characters_fail_in_code_and_output() -> None:
    long = "y" * 81
    problems = pc.check_line_width(page(cell("x = 1\n" + long, stream("z" * 80 + "\n" + long))))
    assert [(p.line, p.message.split(" line")[0]) for p in problems] == [(2, "code"), (2, "output")]
    assert pc.check_line_width(page(cell("x" * 80, stream("\t" * 20)))) == []


def test_a_chapter_needs_a_figure_with_data(tmp_path: Path) -> None:
    assert messages(pc.check_figures(page(cell()))) == [
        "chapter: page: chapter shows no figure with image data"]
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "f.png").write_bytes(png(1))
    on_disk = page(cell("plot()", '<img src="_images/f.png" data-natural-width="120">'), tmp=tmp_path)
    assert pc.check_figures(on_disk) == []


def test_an_image_that_did_not_load_fails(tmp_path: Path) -> None:
    gone = '<img src="_images/gone.png" data-natural-width="0">'
    missing = page(cell("a()", FIGURE), cell("plot()", gone), tmp=tmp_path)
    assert [p.where for p in pc.check_figures(missing)] == ["cell 2 (§1. First)"]


def test_the_same_figure_twice_fails_also_at_another_resolution() -> None:
    first, redrawn = png(2), png(2, size=(180, 120))
    repeated = page(cell("a()", f'<img src="{data_uri(first)}">'),
                    cell("b()", f'<img src="{data_uri(redrawn)}">'))
    assert messages(pc.check_repeated_figures(repeated)) == [
        "chapter: cell 2 (§1. First): repeats the figure of cell 1 (§1. First)"]
    different = page(cell("a()", f'<img src="{data_uri(png(3))}">'),
                     cell("b()", f'<img src="{data_uri(png(4))}">'))
    assert pc.check_repeated_figures(different) == []


def test_a_widget_image_is_compared_by_its_pixels() -> None:
    widget = f'<img src="blob:file:///x" data-pixels="{data_uri(png(5))}">'
    repeated = page(cell("a()", f'<img src="{data_uri(png(5))}">'), cell("w()", widget))
    assert len(pc.check_repeated_figures(repeated)) == 1


VIEW = '<script type="application/vnd.jupyter.widget-view+json">{"model_id": "m"}</script>'


def test_a_widget_the_javascript_did_not_render_fails() -> None:
    rendered = '<div class="widget-subarea"><div class="jupyter-widgets widget-slider"></div></div>' + VIEW
    assert pc.check_widgets(page(FIGURE, cell("w()", rendered))) == []
    assert len(pc.check_widgets(page(FIGURE, cell("w()", '<div class="widget-subarea"></div>' + VIEW)))) == 1
    assert len(pc.check_widgets(page(FIGURE, cell("w()", VIEW)))) == 1


def test_an_output_wider_than_the_column_is_cut_off() -> None:
    wide = page(FIGURE, cell("table", '<div data-overflow="120"><table></table></div>'))
    assert [p.where for p in pc.check_overflow(wide)] == ["cell 1 (§1. First)"]
    assert "120 px wider" in pc.check_overflow(wide)[0].message
    fits = page(FIGURE, cell("table", '<div data-overflow="1"><table></table></div>'))
    assert pc.check_overflow(fits) == []


def test_an_output_that_shows_nothing_is_a_blank_gap() -> None:
    gap = page(FIGURE, cell("train()", '<div class="widget-subarea" data-blank-gap="64"></div>'))
    assert [p.where for p in pc.check_blank_gaps(gap)] == ["cell 1 (§1. First)"]
    thin = page(FIGURE, cell("train()", '<div data-blank-gap="4"></div>'))
    assert pc.check_blank_gaps(thin) == []


def test_an_equation_mathjax_did_not_typeset_fails() -> None:
    typeset = '<span class="math">\\(x\\)<mjx-container></mjx-container></span>'
    assert pc.check_equations(page(FIGURE, typeset)) == []
    assert len(pc.check_equations(page(FIGURE, '<div class="math">\\[y\\]</div>'))) == 1


def test_a_page_without_cells_is_not_a_chapter() -> None:
    prose = pc.Page.parse("<html><head><title>Guide</title></head><body><article><h1>Guide</h1>"
                          "<p>text</p></article></body></html>", Path("/x/guide.html"))
    assert not prose.chapter and pc.check(prose) == []
