"""What a reader must not see on a rendered page: the checks behind ``.ci/check_html.py``.

Each check reads the page's DOM as the browser left it (serialised HTML, with a few ``data-``
attributes the browser wrote: an image's ``data-natural-width``, the pixels of a widget's blob
image in ``data-pixels``, an output's ``data-blank-gap``) and returns :class:`Problem` s that name
the page, the cell and the line. They need no browser, so each one is unit-tested on small HTML
snippets (``tests/ci/test_page_checks.py``).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup, Tag

MAX_LINE = 80  # characters a code or output block shows in the content column without a scrollbar
MIN_GAP_PX = 20  # an output at least this tall that shows nothing is a blank gap
MIN_OVERFLOW_PX = 4  # an output at least this much wider than the column is cut off
ERROR_TEXTS = ("Traceback (most recent call last)", "Error displaying widget",
               "Error rendering Jupyter widget")
WARNING_TEXT = re.compile(r"\b[A-Z]\w*Warning\b|\bwarnings\.warn\b|^\s*warn(ing)?:", re.M | re.I)
MACHINE_PATH = re.compile(r"(?<![\w.:/])(?:/(?:home|Users|tmp|root|usr|opt|var|work|mnt|private)/\S+"
                          r"|\S*site-packages\S*|[A-Za-z]:\\\S+)")
BANNER = re.compile(r"Copyright \(c\)|^Running HiGHS|^SCIP version|Gurobi Optimizer version|"
                    r"^Welcome to the CBC|^This is Ipopt", re.M | re.I)
TABLE_RULE = set("-\u2013\u2014")  # a Markdown table's rule row; smartquotes make '---' a dash
THUMBNAIL = (64, 64)  # two figures are compared as grey thumbnails of this size ...
MIN_CORRELATION = 0.97  # ... and are the same figure above this correlation (a redraw at another dpi)
MAX_ASPECT_CHANGE = 0.03
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class Problem:
    """One thing a reader would trip over: where it is and what it is."""

    page: str
    where: str     # "cell 7 (§3. Selecting features)" or "§2. … (code block)"
    message: str
    line: int | None = None

    def __str__(self) -> str:
        line = f", line {self.line}" if self.line is not None else ""
        return f"{self.page}: {self.where}{line}: {self.message}"


@dataclass
class Page:
    """One rendered page: its name, its file (to resolve images) and its parsed DOM."""

    name: str
    file: Path
    soup: BeautifulSoup
    chapter: bool

    @classmethod
    def parse(cls, html: str, file: Path, name: str | None = None, chapter: bool | None = None) -> Page:
        """Parse serialised HTML; a page with code cells counts as a chapter unless told."""
        soup = BeautifulSoup(html, "html.parser")
        if chapter is None:
            chapter = soup.select_one("div.cell") is not None
        return cls(name or file.stem, file, soup, chapter)

    @property
    def content(self) -> Tag:
        """The article (the page's own content, without navigation); the body if there is none."""
        return self.soup.select_one("article") or self.soup.body or self.soup


def _section(node: Tag) -> str:
    heading = node.find_previous(["h1", "h2", "h3"])
    if heading is None:
        return "top of page"
    return "§" + heading.get_text(" ", strip=True).rstrip("#").strip()


def locate(node: Tag, page: Page) -> str:
    """Name where ``node`` sits: its cell's number on the page and section, or its section."""
    cell = node if "cell" in (node.get("class") or []) else node.find_parent("div", class_="cell")
    if cell is None:
        return _section(node)
    cells = page.content.select("div.cell")
    number = next(i for i, other in enumerate(cells, 1) if other is cell)
    return f"cell {number} ({_section(cell)})"


def _outputs(page: Page) -> Iterator[Tag]:
    yield from page.content.select("div.cell_output")


def _short(text: str, width: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def check_title(page: Page) -> list[Problem]:
    """The browser tab names the page's heading."""
    title = page.soup.title.get_text().strip() if page.soup.title else ""
    h1 = page.content.find("h1") or page.soup.find("h1")
    heading = h1.get_text(" ", strip=True).rstrip("#").strip() if h1 else ""
    if heading and title.startswith(heading[:40]):
        return []
    return [Problem(page.name, "title", f"title {title!r} does not name the page's heading {heading!r}")]


def check_errors(page: Page) -> list[Problem]:
    """No traceback and no widget error anywhere on the page."""
    problems = []
    for node in page.content.find_all(string=lambda s: any(t in s for t in ERROR_TEXTS)):
        text = next(t for t in ERROR_TEXTS if t in node)
        problems.append(Problem(page.name, locate(node.parent, page), f"shows {text!r}"))
    return problems


def check_clean_outputs(page: Page) -> list[Problem]:
    """No stderr output; no warning text, solver banner or machine path in any output."""
    problems = []
    for output in _outputs(page):
        where = locate(output, page)
        for stderr in output.select("div.stderr"):
            problems.append(Problem(page.name, where, f"stderr output {_short(stderr.get_text())} "
                                    "(fix its cause or silence it with the tool's own option)"))
        for number, line in enumerate(output.get_text().strip("\n").splitlines(), 1):
            if WARNING_TEXT.search(line):
                problems.append(Problem(page.name, where, f"warning text {_short(line)}", number))
            elif BANNER.search(line):
                problems.append(Problem(page.name, where, f"solver banner {_short(line)} (silence "
                                        "the solver with its own options)", number))
            elif MACHINE_PATH.search(line):
                path = MACHINE_PATH.search(line).group(0)
                problems.append(Problem(page.name, where, f"machine path {_short(path)}", number))
    return problems


def _is_table_rule(line: str) -> bool:
    stripped = line.strip()
    rest = {c for c in stripped if c not in "|: \t"}
    return "|" in stripped and bool(rest) and rest <= TABLE_RULE


def check_markdown_tables(page: Page) -> list[Problem]:
    """No Markdown table printed as text (CommonMark in MyST-NB outputs has no tables)."""
    problems = []
    for output in _outputs(page):
        lines = output.get_text().strip("\n").splitlines()
        for number, line in enumerate(lines, 1):
            if _is_table_rule(line) and number > 1 and "|" in lines[number - 2]:
                problems.append(Problem(
                    page.name, locate(output, page),
                    "a Markdown table printed as text: show a DataFrame/Styler or an object's "
                    "_repr_html_", number - 1))
    return problems


def check_line_width(page: Page, limit: int = MAX_LINE) -> list[Problem]:
    """No code or output line wider than ``limit`` characters (the page would cut it off)."""
    problems = []
    for pre in page.content.find_all("pre"):
        kind = "output" if pre.find_parent("div", class_="cell_output") else "code"
        for number, line in enumerate(pre.get_text().splitlines(), 1):
            width = len(line.expandtabs(4).rstrip())
            if width > limit:
                problems.append(Problem(page.name, locate(pre, page),
                                        f"{kind} line of {width} > {limit} characters: {_short(line, 50)}",
                                        number))
    return problems


def _image_bytes(img: Tag, page: Page) -> bytes | None:
    src = img.get("data-pixels") or img.get("src") or ""
    if src.startswith("data:"):
        payload = src.split(",", 1)[-1]
        try:
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        except ValueError:
            return None
    if not src or src.startswith(("blob:", "http:", "https:")):
        return None
    path = (page.file.parent / unquote(urlsplit(src).path)).resolve()
    return path.read_bytes() if path.is_file() else None


def _figures(page: Page) -> list[Tag]:
    """Images a chapter shows as results: in cell outputs and figures (not logos or badges)."""
    return [img for img in page.content.find_all("img")
            if img.find_parent("div", class_="cell_output") or img.find_parent("figure")]


def check_figures(page: Page) -> list[Problem]:
    """A chapter shows at least one figure; every figure has data and the browser drew it."""
    problems = []
    figures = _figures(page)
    for img in figures:
        data = _image_bytes(img, page)
        drawn = img.get("data-natural-width")
        if (data is not None and len(data) <= 100) or (data is None and not img.get("src", "").startswith(
                ("blob:", "http"))) or drawn == "0":
            problems.append(Problem(page.name, locate(img, page),
                                    f"image {_short(img.get('src', ''), 50)} has no data or did not load"))
    if page.chapter and not any(_image_bytes(img, page) for img in figures):
        problems.append(Problem(page.name, "page", "chapter shows no figure with image data"))
    return problems


def _thumbnail(data: bytes):
    """An image as its aspect ratio and a small grey thumbnail (None if PIL cannot read it)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            grey = image.convert("L")
            return grey.width / grey.height, np.asarray(grey.resize(THUMBNAIL, Image.BILINEAR), float)
    except Exception:  # not an image PIL reads (e.g. SVG): only identical bytes count as a repeat
        return None


def same_figure(a: bytes, b: bytes) -> bool:
    """True when two images show the same figure, also when drawn at another resolution."""
    import numpy as np

    if a == b:
        return True
    first, second = _thumbnail(a), _thumbnail(b)
    if first is None or second is None or abs(first[0] / second[0] - 1) > MAX_ASPECT_CHANGE:
        return False
    x, y = first[1].ravel(), second[1].ravel()
    if x.std() == 0 or y.std() == 0:
        return bool(np.array_equal(x, y))
    return float(np.corrcoef(x, y)[0, 1]) >= MIN_CORRELATION


def check_repeated_figures(page: Page) -> list[Problem]:
    """No figure shown twice on a page (a static copy before its widget, for instance)."""
    shown: list[tuple[bytes, str]] = []
    problems = []
    for img in _figures(page):
        data = _image_bytes(img, page)
        if not data or len(data) <= 100:
            continue
        where = locate(img, page)
        earlier = next((place for other, place in shown if same_figure(other, data)), None)
        if earlier is not None:
            problems.append(Problem(page.name, where, f"repeats the figure of {earlier}"))
        shown.append((data, where))
    return problems


def check_widgets(page: Page) -> list[Problem]:
    """Every embedded widget view was rendered by the vendored JavaScript."""
    views = page.content.find_all("script", type=WIDGET_VIEW)
    problems = []
    for view in views:
        # the widget manager puts the view's area just before its script
        area = (view.find_previous_sibling("div", class_="widget-subarea")
                or view.find_next_sibling("div", class_="widget-subarea"))
        if area is None or area.find(class_="jupyter-widgets") is None:
            problems.append(Problem(page.name, locate(view, page), "widget was not rendered"))
    return problems


def _marked(page: Page, attribute: str, minimum: int, message: str) -> list[Problem]:
    """Outputs the browser marked with ``attribute`` (a size in px) of at least ``minimum`` px."""
    problems = []
    for node in page.content.find_all(attrs={attribute: True}):
        size = int(float(node[attribute]))
        if size >= minimum:
            problems.append(Problem(page.name, locate(node, page), message.format(size)))
    return problems


def check_blank_gaps(page: Page) -> list[Problem]:
    """No output that takes room and shows nothing (e.g. a hidden progress bar)."""
    return _marked(page, "data-blank-gap", MIN_GAP_PX,
                   "an output leaves a blank gap of {} px (a hidden widget, e.g. a finished "
                   "progress bar?)")


def check_overflow(page: Page) -> list[Problem]:
    """No output wider than the page's column (a table or figure cut off behind a scroll bar)."""
    return _marked(page, "data-overflow", MIN_OVERFLOW_PX,
                   "an output is {} px wider than the page: a reader sees it cut off (fewer or "
                   "narrower columns?)")


def check_equations(page: Page) -> list[Problem]:
    """Every equation Sphinx wrote was typeset by MathJax."""
    maths = page.content.select("span.math, div.math")
    missing = [m for m in maths if m.find("mjx-container") is None]
    return [Problem(page.name, locate(m, page), f"equation {_short(m.get_text(), 40)} was not typeset")
            for m in missing]


CHECKS: tuple[Callable[[Page], list[Problem]], ...] = (
    check_title, check_errors, check_clean_outputs, check_markdown_tables, check_line_width,
    check_figures, check_repeated_figures, check_widgets, check_blank_gaps, check_overflow,
    check_equations)


def check(page: Page) -> list[Problem]:
    """Every check on one page."""
    return [problem for run in CHECKS for problem in run(page)]
