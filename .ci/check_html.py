"""Open pages of the built book in headless Chromium and check what a reader would see.

Playwright drives the system Chromium. Each page is loaded from disk, its widgets and equations are
left to render with the vendored JavaScript (no network is needed), and the DOM as the browser left
it goes through the checks of ``page_checks.py``: the title names the heading; no traceback,
stderr, warning text or machine path in any output; no Markdown table printed as text; no code or
output line wider than 80 characters; a chapter shows figures, every figure loaded and none is shown
twice; every widget rendered, no output leaves a blank gap; every equation typeset. Each failure
names the page, the cell and the line. A full-length screenshot at 1280 px of each page is saved.

    python .ci/check_html.py                     # every page of _toc.yml in _build/html
    python .ci/check_html.py PAGE.html [...]     # pages built alone, e.g. with
        jupyter-book build book/sldd.md --path-output /tmp/jb  (-> /tmp/jb/_build/_page/sldd/html/sldd.html)
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_files import ROOT, is_notebook, page_source, toc_pages  # noqa: E402
from page_checks import Page, Problem, check  # noqa: E402

VIEWPORT = {"width": 1280, "height": 2400}
RENDER_TIMEOUT_MS = 30_000  # for require.js to load the widget manager and render every view
SHOWN_PER_PAGE = 40  # problems printed per page; the count says how many more

# Runs in the page once it has rendered: marks what only the browser knows, then hands back the DOM.
ANNOTATE = """async () => {
  const toDataUrl = async (url) => {
    const blob = await (await fetch(url)).blob();
    return await new Promise((done) => {
      const reader = new FileReader();
      reader.onload = () => done(reader.result);
      reader.readAsDataURL(blob);
    });
  };
  for (const img of document.querySelectorAll('img')) {
    img.setAttribute('data-natural-width', String(img.complete ? img.naturalWidth : 0));
    if (img.src.startsWith('blob:')) {
      try { img.setAttribute('data-pixels', await toDataUrl(img.src)); } catch (e) {}
    }
  }
  const shows = (el) => {
    if (el.innerText && el.innerText.trim()) return true;
    const media = 'img, svg, canvas, video, iframe, mjx-container';
    return [el, ...el.querySelectorAll(media)].filter((m) => m.matches(media)).some((m) => {
      const r = m.getBoundingClientRect();
      return r.width > 1 && r.height > 1 && getComputedStyle(m).visibility === 'visible';
    });
  };
  // measure hidden cells as a reader who opens them sees them
  const closed = [...document.querySelectorAll('details:not([open])')];
  for (const d of closed) d.open = true;
  for (const output of document.querySelectorAll('div.cell_output > *')) {
    const height = output.getBoundingClientRect().height;
    if (height > 0 && !shows(output)) output.setAttribute('data-blank-gap', String(Math.round(height)));
    const [inner] = [output, ...output.querySelectorAll('*')]
      .filter((el) => el.scrollWidth > el.clientWidth + 2 && el.clientWidth > 0);
    if (inner) output.setAttribute('data-overflow', String(inner.scrollWidth - inner.clientWidth));
  }
  for (const d of closed) d.open = false;
  return document.documentElement.outerHTML;
}"""

RENDERED = """() => {
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  const drawn = [...document.querySelectorAll('div.widget-subarea')]
    .filter((a) => a.querySelector('.jupyter-widgets')).length;
  const maths = document.querySelectorAll('span.math, div.math').length;
  const typeset = document.querySelectorAll('mjx-container').length;
  return drawn >= views.length && (maths === 0 || typeset >= maths);
}"""


def chromium_path() -> str | None:
    """The system Chromium (Playwright's own browser is used when there is none)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_dom(browser, html: Path) -> tuple[str, object]:
    """Load one page, wait for widgets and equations, return its annotated DOM and the page."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(html.resolve().as_uri(), wait_until="load")
    with contextlib.suppress(Exception):  # what did not render is reported by the checks
        page.wait_for_function(RENDERED, timeout=RENDER_TIMEOUT_MS, polling=250)
    page.wait_for_timeout(500)  # let the last views lay out before heights are measured
    return page.evaluate(ANNOTATE), page


def check_file(browser, html: Path, name: str, chapter: bool | None, screenshots: Path | None
               ) -> list[Problem]:
    """All problems of one built page; saves its full-length screenshot."""
    if not html.is_file():
        return [Problem(name, "page", f"{html} was not built")]
    dom, page = rendered_dom(browser, html)
    try:
        problems = check(Page.parse(dom, html, name, chapter))
        if screenshots is not None:
            shot = screenshots / f"{name.replace('/', '__')}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            if not shot.is_file() or shot.stat().st_size < 10_000:
                problems.append(Problem(name, "page", f"no screenshot at {shot}"))
    finally:
        page.close()
    return problems


def book_pages(html_root: Path) -> list[tuple[Path, str, bool | None]]:
    """Every page of the table of contents: its HTML file, name and whether it is a chapter."""
    found = []
    for page in toc_pages():
        source = page_source(page)
        found.append((html_root / f"{page}.html", page, source is not None and is_notebook(source)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", type=Path,
                        help="built HTML pages to check (default: every page of _toc.yml under --html)")
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--no-screenshots", action="store_true")
    args = parser.parse_args(argv)
    pages = ([(path, path.stem, None) for path in args.pages] if args.pages
             else book_pages(args.html))
    screenshots = None if args.no_screenshots else args.screenshots
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("Playwright is missing: `pip install playwright` (bash .ci/setup installs it).",
              file=sys.stderr)
        return 2
    failed = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        for html, name, chapter in pages:
            start = time.perf_counter()
            problems = check_file(browser, html, name, chapter, screenshots)
            status = "ok" if not problems else f"FAILED: {len(problems)} problems"
            print(f"{name:<28} {time.perf_counter() - start:5.1f} s  {status}", flush=True)
            for problem in problems[:SHOWN_PER_PAGE]:
                print(f"    {problem}")
            if len(problems) > SHOWN_PER_PAGE:
                print(f"    … and {len(problems) - SHOWN_PER_PAGE} more")
            failed += bool(problems)
        browser.close()
    where = f"; screenshots in {screenshots}" if screenshots else ""
    print(f"{len(pages) - failed} of {len(pages)} pages pass the page checks{where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
