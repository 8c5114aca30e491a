"""Write the output-free ``.ipynb`` twin of every chapter, the file Colab opens; ``--check`` reports drift.

The MyST ``.md`` is the one source. Its twin sits beside it (``book/qpm.md`` -> ``book/qpm.ipynb``):
sphinx-book-theme points the Colab button at it, and the book build ignores it (``exclude_patterns``).

    python .ci/sync_notebooks.py            # (re)write the twins of all chapters in _toc.yml
    python .ci/sync_notebooks.py --check    # exit 1 and name the chapters whose twin is stale
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_files import ROOT, chapters  # noqa: E402

# Colab opens the twin on a GPU runtime, where the chapters run the full world.
COLAB_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
# Colab opens the twin alone, without the folder beside it: its Markdown images point at the repository.
LOCAL_IMAGES = "](images/"
REPOSITORY_IMAGES = "](https://raw.githubusercontent.com/hands-on-vision/book/main/book/images/"


def twin_path(md: Path) -> Path:
    """Where the twin of a chapter lives."""
    return md.with_suffix(".ipynb")


def make_twin(md: Path) -> nbformat.NotebookNode:
    """The output-free notebook for a chapter: same cells (images from GitHub), Colab metadata, stable ids."""
    nb = jupytext.read(md)
    nb.metadata = nbformat.from_dict({
        "kernelspec": nb.metadata["kernelspec"],
        "language_info": {"name": "python"},
        **COLAB_METADATA,
    })
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index:03d}"
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(LOCAL_IMAGES, REPOSITORY_IMAGES)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The twin's file content (stable, so an unchanged chapter writes identical bytes)."""
    return nbformat.writes(nb, version=4) + "\n"


def write_twin(md: Path) -> Path:
    """Write a chapter's twin atomically; returns its path."""
    target = twin_path(md)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(make_twin(md)))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def stale(md: Path) -> str | None:
    """Why a chapter's twin is out of date, or None when it matches the ``.md``."""
    target = twin_path(md)
    if not target.is_file():
        return f"{target.name} is missing"
    if target.read_text(encoding="utf-8") != render(make_twin(md)):
        return f"{target.name} differs from {md.name}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale twins (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        problems = [p for p in map(stale, chapters()) if p]
        for problem in problems:
            print(problem)
        if problems:
            print("Run `python .ci/sync_notebooks.py` to regenerate the Colab notebooks.")
        return 1 if problems else 0
    for md in chapters():
        print(f"wrote {write_twin(md).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
