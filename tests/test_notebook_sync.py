"""The Colab notebooks (``book/*.ipynb``) match their chapters, and executions are cached faithfully."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))

import book_files  # noqa: E402
import cache_executed  # noqa: E402
import sync_notebooks  # noqa: E402

CHAPTERS = book_files.chapters()

CHAPTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
    jupytext_version: 1.19.6
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---

# A chapter

:::{note}
Prose with a colon fence.
:::

```{code-cell} ipython3
:tags: [parameters]

profile = None
```

```{code-cell} ipython3
print(1 + 1)
```
"""


def code_cells(nb: nbformat.NotebookNode) -> list[tuple[str, list[str]]]:
    """Source and tags of every code cell."""
    return [(c.source, list(c.metadata.get("tags", []))) for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("md", CHAPTERS, ids=[md.stem for md in CHAPTERS])
def test_twin_is_up_to_date(md: Path) -> None:
    problem = sync_notebooks.stale(md)
    assert problem is None, f"{problem}: run `python .ci/sync_notebooks.py` and commit the .ipynb."


@pytest.mark.parametrize("md", CHAPTERS, ids=[md.stem for md in CHAPTERS])
def test_twin_runs_the_code_the_book_shows(md: Path) -> None:
    """Colab runs what the book executed: jupytext's reading equals myst-nb's, cell by cell."""
    twin = nbformat.read(sync_notebooks.twin_path(md), as_version=4)
    assert code_cells(twin) == code_cells(cache_executed.as_myst_nb_reads(md))


def test_twins_carry_no_outputs_and_have_a_chapter() -> None:
    chapters = {md.with_suffix(".ipynb") for md in CHAPTERS}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        assert path in chapters, f"{path.name} has no chapter in _toc.yml; delete it."
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def test_edited_chapter_makes_its_twin_stale(tmp_path: Path) -> None:
    md = tmp_path / "chapter.md"
    md.write_text(CHAPTER)
    assert sync_notebooks.stale(md) == "chapter.ipynb is missing"
    sync_notebooks.write_twin(md)
    assert sync_notebooks.stale(md) is None
    md.write_text(CHAPTER.replace("1 + 1", "1 + 2"))
    assert sync_notebooks.stale(md) == "chapter.ipynb differs from chapter.md"


def test_twin_takes_its_images_from_the_repository(tmp_path: Path) -> None:
    """Colab opens the twin without book/images/ beside it, so its badge links the image on GitHub."""
    md = tmp_path / "chapter.md"
    md.write_text(CHAPTER.replace("# A chapter\n", "# A chapter\n\n[![Badge](images/badge.svg)](https://x)\n"))
    title = sync_notebooks.make_twin(md).cells[0].source
    assert "](https://raw.githubusercontent.com/hands-on-vision/book/main/book/images/badge.svg)" in title
    assert "](images/" not in title


def executed(md: Path) -> nbformat.NotebookNode:
    """The chapter as nbmake leaves it: outputs, execution counts and timing metadata."""
    nb = nbformat.read(sync_notebooks.write_twin(md), as_version=4)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
        cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cell {count}\n")]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_stored_outputs_are_found_for_the_page(tmp_path: Path) -> None:
    """The book build's lookup (hash of the .md as myst-nb reads it) finds nbmake's outputs."""
    from jupyter_cache import get_cache

    md = tmp_path / "chapter.md"
    md.write_text(CHAPTER)
    (tmp_path / "run").mkdir()
    nbformat.write(executed(md), tmp_path / "run" / "chapter.ipynb")
    cache = tmp_path / "cache"
    assert cache_executed.store(tmp_path / "run", cache, sources=[md]) == []
    _, merged = get_cache(str(cache)).merge_match_into_notebook(cache_executed.as_myst_nb_reads(md))
    outputs = [c.outputs[0].text for c in merged.cells if c.cell_type == "code"]
    assert outputs == ["cell 1\n", "cell 2\n"]
    assert "widgets" in merged.metadata


def test_failed_or_edited_chapter_is_not_cached(tmp_path: Path) -> None:
    md = tmp_path / "chapter.md"
    md.write_text(CHAPTER)
    (tmp_path / "run").mkdir()
    nb = executed(md)
    nb.cells[-1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom",
                                                   traceback=[])]
    nbformat.write(nb, tmp_path / "run" / "chapter.ipynb")
    problems = cache_executed.store(tmp_path / "run", tmp_path / "cache", sources=[md])
    assert len(problems) == 1 and "ValueError" in problems[0]
    nbformat.write(executed(md), tmp_path / "run" / "chapter.ipynb")
    md.write_text(CHAPTER.replace("1 + 1", "1 + 2"))
    problems = cache_executed.store(tmp_path / "run", tmp_path / "cache", sources=[md])
    assert len(problems) == 1 and "differs from the .md" in problems[0]
