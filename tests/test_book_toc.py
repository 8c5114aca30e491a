"""The book's sources agree with each other: table of contents, chapter conventions, citations."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))

import book_files  # noqa: E402
from cache_executed import as_myst_nb_reads  # noqa: E402

BOOK = ROOT / "book"
PAGES = sorted(BOOK.glob("*.md"))
CHAPTERS = book_files.chapters()
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
LITERAL = re.compile(r"``.+?``")  # role syntax quoted as code, not a citation
COLAB_CELL = (
    'import sys\n'
    '\n'
    'if "google.colab" in sys.modules:  # on Colab, install the package first\n'
    '    %pip install -q "companion @ git+https://github.com/hands-on-vision/book"'
)
BADGE = re.compile(r"\[!\[Open in Colab\]\((?P<image>[^)]+)\)\]\((?P<link>[^)]+)\)")
COLAB_URL = "https://colab.research.google.com/github/hands-on-vision/book/blob/main/book/{}.ipynb"
REQUIRED_KEYS = {
    "norrenbrock2023take5", "norrenbrock2024qsenn", "norrenbrock2025qpm", "norrenbrock2025chiqpm",
    "zimmermann2026dinoqpm", "kaiser2025usam", "glandorf2026vpp", "wong2021glmsaga",
    "kirillov2023sam", "ravi2024sam2", "bolya2023tome", "wah2011cub", "pont2017davis",
    "lin2014coco", "dosovitskiy2021vit", "he2016resnet",
}


def bibliography() -> dict:
    from pybtex.database import parse_file

    return parse_file(str(BOOK / "references.bib")).entries


def test_toc_walk_finds_nested_entries(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({
        "format": "jb-book", "root": "book/intro",
        "parts": [{"caption": "A", "chapters": [
            {"file": "book/a.md", "sections": [{"file": "book/a1"}]}, {"file": "book/b"}]}]}))
    assert book_files.toc_pages(tmp_path) == ["book/intro", "book/a", "book/a1", "book/b"]
    assert book_files.missing_pages(tmp_path) == ["book/intro", "book/a", "book/a1", "book/b"]


def test_every_page_is_in_the_toc() -> None:
    listed = set(book_files.toc_pages())
    orphans = [p.name for p in PAGES if str(p.relative_to(ROOT).with_suffix("")) not in listed]
    assert not orphans, f"add these pages to _toc.yml (or delete them): {orphans}"


def test_bibliography_has_every_required_entry_with_authors() -> None:
    entries = bibliography()
    assert set(entries) >= REQUIRED_KEYS, f"missing: {sorted(REQUIRED_KEYS - set(entries))}"
    for key, entry in entries.items():
        assert entry.persons.get("author"), f"{key} has no authors"
        assert entry.fields.get("title") and entry.fields.get("year"), f"{key} lacks title or year"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_citations_resolve(page: Path) -> None:
    text = LITERAL.sub("", page.read_text())
    keys = {k.strip() for group in CITE.findall(text) for k in group.split(",")}
    unknown = keys - set(bibliography())
    assert not unknown, f"{page.name} cites keys missing from book/references.bib: {sorted(unknown)}"


def test_only_the_references_page_prints_the_bibliography() -> None:
    pages = [p.name for p in PAGES if "```{bibliography}" in p.read_text()]
    assert pages == ["references.md"]


@pytest.mark.parametrize("md", CHAPTERS, ids=[md.stem for md in CHAPTERS])
def test_chapter_follows_the_conventions(md: Path) -> None:
    meta = book_files.front_matter(md)
    assert meta["jupytext"]["text_representation"]["format_name"] == "myst"
    assert meta["kernelspec"]["name"] == "python3"
    code = [c for c in as_myst_nb_reads(md).cells if c.cell_type == "code"]
    assert code[0].source == COLAB_CELL, "the first code cell must be the Colab install cell"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0].source.startswith("profile = None"), \
        "exactly one cell tagged `parameters`, starting with `profile = None`"


@pytest.mark.parametrize("md", CHAPTERS, ids=[md.stem for md in CHAPTERS])
def test_chapter_has_a_colab_badge_under_its_title(md: Path) -> None:
    body = md.read_text().split("\n---\n", 1)[1].lstrip().splitlines()
    assert body[0].startswith("# "), "the chapter starts with its title"
    below = next(line for line in body[1:] if line.strip())
    badge = BADGE.fullmatch(below.strip())
    assert badge, f"the line under the title must be the Colab badge, found: {below!r}"
    assert badge["link"] == COLAB_URL.format(md.stem)
    image = (md.parent / badge["image"]).resolve()
    assert image.suffix == ".svg" and image.is_file() and BOOK in image.parents, \
        f"the badge image must be a local SVG in book/ (the book builds offline): {badge['image']}"


@pytest.mark.parametrize("md", CHAPTERS, ids=[md.stem for md in CHAPTERS])
def test_chapter_says_what_the_full_world_costs_before_it_starts(md: Path) -> None:
    from companion.worlds import colab_note

    cells = as_myst_nb_reads(md).cells
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    before = "\n\n".join(c.source for c in cells[:first_code] if c.cell_type == "markdown")
    assert colab_note(md.stem) in before, (
        "paste companion.worlds.colab_note(" + repr(md.stem) + ") above the Colab install cell")
    code = [c for c in cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    setup = code[params + 1].source.splitlines()
    profile = next(i for i, line in enumerate(setup) if "companion.set_profile(" in line)
    assert setup[profile + 1] == f'companion.describe_world("{md.stem}")', \
        "the set-up cell prints the world's cost right after set_profile"
