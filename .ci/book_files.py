"""Where the book's pages live: read from ``_toc.yml``, the one list of pages and chapters."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOC = "_toc.yml"
SOURCE_SUFFIXES = (".md", ".ipynb")


def toc_pages(root: Path = ROOT) -> list[str]:
    """Every page of the table of contents as a docname (``book/intro`` …), in reading order."""
    path = root / TOC
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from a checkout of the book's repository.")
    toc = yaml.safe_load(path.read_text())
    pages = [toc["root"]]

    def walk(node: dict) -> None:
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                if "file" in child:
                    pages.append(child["file"])
                walk(child)

    walk(toc)
    return [str(Path(page).with_suffix("")) for page in pages]


def page_source(page: str, root: Path = ROOT) -> Path | None:
    """The source file of a page (``.md`` preferred over ``.ipynb``), or None while it is missing."""
    for suffix in SOURCE_SUFFIXES:
        path = root / f"{page}{suffix}"
        if path.is_file():
            return path
    return None


def front_matter(path: Path) -> dict:
    """The YAML front matter of a MyST file (empty if it has none)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        raise ValueError(f"{path}: front matter opened with '---' but never closed.")
    return yaml.safe_load(text[4:end]) or {}


def is_notebook(path: Path) -> bool:
    """True for a jupytext MyST notebook (front matter with a kernelspec), i.e. a chapter."""
    return path.suffix == ".md" and "kernelspec" in front_matter(path)


def chapters(root: Path = ROOT) -> list[Path]:
    """The chapters (executable MyST notebooks) listed in the table of contents that exist now."""
    found = (page_source(page, root) for page in toc_pages(root))
    return [path for path in found if path is not None and is_notebook(path)]


def missing_pages(root: Path = ROOT) -> list[str]:
    """Pages listed in the table of contents that have no source file yet."""
    return [page for page in toc_pages(root) if page_source(page, root) is None]
