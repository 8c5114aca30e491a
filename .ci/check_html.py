"""Open every page of the built book in headless Chromium and check what a reader would see.

For each page of ``_toc.yml``: the page loads and has its title; it shows no error output; a
chapter shows at least one figure (an ``<img>`` whose data is there); every widget embedded in the
page and every equation has been rendered by the vendored JavaScript (no network is needed). A
screenshot of each page is saved.

    python .ci/check_html.py [--html _build/html] [--screenshots _build/screenshots]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_files import ROOT, is_notebook, page_source, toc_pages  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
VIRTUAL_TIME_MS = 15000  # lets require.js load the widget manager and render every view
WINDOW = "1280,2400"
ERROR_TEXTS = ("Traceback (most recent call last)", "Error displaying widget",
               "Error rendering Jupyter widget")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class PageDom:
    """What the rendered DOM of one page contains."""

    title: str = ""
    heading: str = ""
    images: list[str] = field(default_factory=list)     # src of content images
    widget_views: int = 0                                # embedded widget views
    rendered_views: int = 0                              # widget areas the JavaScript filled
    equations: int = 0                                   # math elements Sphinx wrote
    typeset: int = 0                                     # equations MathJax typeset
    text: str = ""


class _DomReader(HTMLParser):
    """Collects a PageDom while walking the serialised DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.dom = PageDom()
        self._stack: list[tuple[str, set[str]]] = []
        self._in = {"title": False, "h1": False}
        self._title_done = False
        self._subareas: list[int] = []    # stack depths of open widget-subarea divs
        self._filled: list[bool] = []
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "img":
            src = attrs.get("src") or ""
            # the Colab badge is a link under the title, not a figure
            if ("_images/" in src or src.startswith("data:image")) and not src.endswith("colab-badge.svg"):
                self.dom.images.append(src)
            return
        if tag in ("br", "hr", "meta", "link", "input", "source", "wbr", "col", "area", "base"):
            return
        self._stack.append((tag, classes))
        if tag == "script" and attrs.get("type") == WIDGET_VIEW:
            self.dom.widget_views += 1
        if "math" in classes and tag in ("span", "div"):
            self.dom.equations += 1
        if tag == "mjx-container":
            self.dom.typeset += 1
        if tag == "div" and "widget-subarea" in classes:
            self._subareas.append(len(self._stack))
            self._filled.append(False)
        elif "jupyter-widgets" in classes and self._filled:
            self._filled[-1] = True
        if tag in self._in:
            self._in[tag] = True

    def handle_endtag(self, tag):
        while self._stack:
            open_tag, _ = self._stack.pop()
            if self._subareas and len(self._stack) < self._subareas[-1]:
                self._subareas.pop()
                self.dom.rendered_views += self._filled.pop()
            if open_tag == tag:
                break
        if tag in self._in:
            self._in[tag] = False
        self._title_done |= tag == "title"  # later <title>s belong to SVG icons

    def handle_data(self, data):
        if self._in["title"] and not self._title_done:
            self.dom.title += data
        if self._in["h1"] and not self.dom.heading:
            self.dom.heading = data.strip()
        self._text.append(data)

    def close(self):
        super().close()
        self.dom.text = " ".join(self._text)


def chromium(url: str, *extra: str, profile_dir: Path, timeout: float = 180) -> str:
    """Run headless Chromium on ``url`` and return its stdout."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise RuntimeError("Chromium is not installed: `apt-get install -y chromium` (Debian).")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
           f"--virtual-time-budget={VIRTUAL_TIME_MS}", *extra, url]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout


def read_dom(html: str) -> PageDom:
    """Parse a serialised DOM."""
    reader = _DomReader()
    reader.feed(html)
    reader.close()
    return reader.dom


def image_has_data(src: str, page: Path) -> bool:
    """True when an image's data is inline or in a non-empty file next to the page."""
    if src.startswith("data:image"):
        payload = src.split(",", 1)[-1]
        return len(base64.b64decode(payload + "=" * (-len(payload) % 4))) > 100
    path = (page.parent / unquote(urlsplit(src).path)).resolve()
    return path.is_file() and path.stat().st_size > 100


def check_page(page: str, html_root: Path, screenshots: Path, profile_dir: Path) -> list[str]:
    """Problems a reader would see on one page (empty when it is fine); saves its screenshot."""
    html = html_root / f"{page}.html"
    if not html.is_file():
        return [f"{html} was not built"]
    url = html.resolve().as_uri()
    dom = read_dom(chromium(url, "--dump-dom", profile_dir=profile_dir))
    problems = []
    if not dom.heading or not dom.title.strip().startswith(dom.heading[:40]):
        problems.append(f"title {dom.title.strip()!r} does not name the page's heading {dom.heading!r}")
    problems += [f"shows {text!r}" for text in ERROR_TEXTS if text in dom.text]
    source = page_source(page)
    if (source is not None and is_notebook(source)
            and not any(image_has_data(src, html) for src in dom.images)):
        problems.append("chapter shows no figure with image data")
    if dom.rendered_views < dom.widget_views:
        problems.append(f"{dom.widget_views - dom.rendered_views} of {dom.widget_views} widgets "
                        "were not rendered")
    if dom.typeset < dom.equations:
        problems.append(f"{dom.equations - dom.typeset} of {dom.equations} equations were not "
                        "typeset")
    shot = screenshots / f"{page.replace('/', '__')}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    chromium(url, f"--screenshot={shot}", f"--window-size={WINDOW}", profile_dir=profile_dir)
    if not shot.is_file() or shot.stat().st_size < 10_000:
        problems.append(f"no screenshot at {shot}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile_dir:
        for page in toc_pages():
            start = time.perf_counter()
            problems = check_page(page, args.html, args.screenshots, Path(profile_dir))
            status = "ok" if not problems else "FAILED: " + "; ".join(problems)
            print(f"{page:<28} {time.perf_counter() - start:5.1f} s  {status}", flush=True)
            failed += bool(problems)
    print(f"{len(toc_pages()) - failed} of {len(toc_pages())} pages render correctly; "
          f"screenshots in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
