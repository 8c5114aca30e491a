"""Build one page of the book alone, as the whole book builds it, and print where its HTML is.

``jupyter-book build book/<page>.md`` builds a page with ``book/`` as the configuration folder, so
the book's paths (the vendored JavaScript in ``book/_vendor``, ``book/references.bib``) do not
resolve there: equations stay untypeset, widgets unrendered and citations unknown. This script
builds the book from the repository root with a table of contents of that page (and the references,
which its citations link to) instead.

    python .ci/build_page.py book/sldd.md [--output /tmp/jb]   # then:
    python .ci/check_html.py /tmp/jb/_build/html/book/sldd.html
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_files import ROOT, toc_pages  # noqa: E402

REFERENCES = "book/references"  # the page with the bibliography, which citations link to


def page_toc(page: str) -> str:
    """A table of contents of ``page`` (a docname such as ``book/sldd``) and the references."""
    toc = f"format: jb-book\nroot: {page}\n"
    return toc if page == REFERENCES else toc + f"chapters:\n  - file: {REFERENCES}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the page's source, e.g. book/sldd.md")
    parser.add_argument("--output", type=Path, default=Path("/tmp/jb-page"),
                        help="build folder (its _build/html holds the page)")
    args = parser.parse_args(argv)
    source = (Path.cwd() / args.page).resolve()
    try:
        page = str(source.relative_to(ROOT).with_suffix(""))
    except ValueError:
        parser.error(f"{args.page} is not inside the book's repository {ROOT}.")
    if page not in toc_pages():
        parser.error(f"{page} is not in _toc.yml: add it there first (pages: {', '.join(toc_pages())}).")
    args.output.mkdir(parents=True, exist_ok=True)
    toc = args.output / "_toc.yml"
    toc.write_text(page_toc(page))
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).with_name("jupyter-book"))
    done = subprocess.run([exe, "build", str(ROOT), "--toc", str(toc), "--path-output",
                           str(args.output)], check=False)
    html = args.output / "_build" / "html" / f"{page}.html"
    if done.returncode == 0 and html.is_file():
        print(f"page built: {html}\ncheck it:   python .ci/check_html.py {html}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
