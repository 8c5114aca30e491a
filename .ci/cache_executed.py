"""Execute each chapter once per CI run: convert for nbmake, then hand its outputs to the book build.

    python .ci/cache_executed.py convert build/notebooks   # chapters (.md) -> notebooks nbmake can run
    pytest --nbmake --overwrite build/notebooks             # executes them, writing outputs in place
    python .ci/cache_executed.py store build/notebooks     # puts the outputs in the book's jupyter-cache

The book is built with ``execute_notebooks: cache``: myst-nb hashes each page's code cells (and
their metadata) and looks the hash up in ``_build/.jupyter_cache``. ``store`` builds the cached
notebook from the ``.md`` exactly as myst-nb reads it, with the outputs nbmake produced, and then
checks that myst-nb's lookup finds it, so the build executes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from myst_nb.core.read import read_myst_markdown_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_files import ROOT, chapters  # noqa: E402

CACHE = ROOT / "_build" / ".jupyter_cache"
MERGED_METADATA = ("language_info", "widgets")


def executed_path(md: Path, folder: Path) -> Path:
    """Where the executed notebook of a chapter lives."""
    return folder / f"{md.stem}.ipynb"


def convert(folder: Path) -> list[Path]:
    """Write every chapter as an ``.ipynb`` into ``folder`` (names must be unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for md in chapters():
        target = executed_path(md, folder)
        if target in written:
            raise ValueError(f"Two chapters are both named {md.stem!r}; give them unique file names.")
        jupytext.write(jupytext.read(md), target, fmt="ipynb")
        written.append(target)
    return written


def as_myst_nb_reads(md: Path) -> nbformat.NotebookNode:
    """The notebook myst-nb makes of a chapter when it builds the page."""
    return read_myst_markdown_notebook(md.read_text("utf8"), add_source_map=True, path=md)


def with_outputs(md: Path, executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The chapter as myst-nb reads it, carrying the outputs of the executed notebook."""
    nb = nbformat.convert(as_myst_nb_reads(md), 4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    done = [cell for cell in executed.cells if cell.cell_type == "code"]
    if [c.source for c in code] != [c.source for c in done]:
        raise ValueError(f"{md.name}: the executed notebook's code differs from the .md; "
                         "convert and execute it again.")
    for cell, run in zip(code, done, strict=True):
        errors = [o for o in run.outputs if o.output_type == "error"]
        if errors:
            raise ValueError(f"{md.name}: a cell raised {errors[0].ename}; it was not cached.")
        if run.execution_count is None:
            raise ValueError(f"{md.name}: a cell was never executed; it was not cached.")
        cell.outputs = run.outputs
        cell.execution_count = run.execution_count
    for key in MERGED_METADATA:
        if key in executed.metadata:
            nb.metadata[key] = executed.metadata[key]
    return nb


def store(folder: Path, cache_path: Path = CACHE, sources: list[Path] | None = None) -> list[str]:
    """Cache the executed chapters found in ``folder``; returns the problems (empty when all cached).

    ``sources`` are the chapters' ``.md`` files (default: all chapters of the table of contents).
    """
    cache = get_cache(str(cache_path))
    problems = []
    for md in chapters() if sources is None else sources:
        path = executed_path(md, folder)
        if not path.is_file():
            problems.append(f"{md.name}: no executed notebook at {path}")
            continue
        try:
            nb = with_outputs(md, nbformat.read(path, as_version=4))
        except ValueError as err:
            problems.append(str(err))
            continue
        record = cache.cache_notebook_bundle(
            CacheBundleIn(nb, str(md), data={"executed_by": "nbmake"}),
            check_validity=False, overwrite=True)
        try:
            found = cache.match_cache_notebook(as_myst_nb_reads(md)).pk == record.pk
        except KeyError:
            found = False
        if not found:
            problems.append(f"{md.name}: the book build would not find its cached outputs")
            continue
        print(f"cached {md.name} (record {record.pk})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("convert", "store"))
    parser.add_argument("folder", type=Path, help="folder of the converted / executed notebooks")
    args = parser.parse_args(argv)
    if args.action == "convert":
        for path in convert(args.folder):
            print(f"converted {path}")
        return 0
    problems = store(args.folder)
    for problem in problems:
        print(f"not cached: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
