"""Student copies: every chapter as an output-free notebook with the exercise solutions taken out.

    python tools/student_copies.py handout/          # one .ipynb per chapter into handout/

In the "Exercises" section of a chapter every code cell is a solution (or a hidden check of one)
and is removed, as is every discussion of an answer (an admonition titled "What this shows").
The exercise prompts stay, each followed by an empty code cell for the student's answer.
Everything before the exercises is the chapter unchanged, so a student copy runs as far as its
exercises wherever the chapter runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chapters import present  # noqa: E402

__all__ = ["DISCUSSION_TITLE", "EXERCISES_HEADING", "student_copy", "write_student_copies"]

EXERCISES_HEADING = "## Exercises"
DISCUSSION_TITLE = "What this shows"
FENCE_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{admonition\}\s*(?P<title>.*)$")
PLACEHOLDER = "# Your answer to {title}\n"


def _blocks(text: str) -> list[tuple[str | None, str]]:
    """The markdown split into admonition blocks ``(title, text)`` and plain runs ``(None, text)``."""
    lines = text.split("\n")
    blocks: list[tuple[str | None, str]] = []
    plain: list[str] = []
    i = 0
    while i < len(lines):
        opened = FENCE_OPEN.match(lines[i])
        if opened is None:
            plain.append(lines[i])
            i += 1
            continue
        fence = opened["fence"]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise ValueError(f"admonition {opened['title']!r} is opened with {fence} but never closed.")
        if plain:
            blocks.append((None, "\n".join(plain)))
            plain = []
        blocks.append((opened["title"].strip(), "\n".join(lines[i:end + 1])))
        i = end + 1
    if plain:
        blocks.append((None, "\n".join(plain)))
    return blocks


def _sections(text: str) -> list[str]:
    """The markdown split before every level-two heading."""
    chunks: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.startswith("## ") and any(chunks[-1]):
            chunks.append([])
        chunks[-1].append(line)
    return ["\n".join(chunk) for chunk in chunks]


def student_copy(chapter: Path) -> nbformat.NotebookNode:
    """The chapter as a notebook without outputs, exercise solutions or their discussions."""
    notebook = jupytext.read(chapter)
    cells = []
    inside = False
    prompts = 0
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            if not inside:
                cells.append(cell)
            continue
        for chunk in _sections(cell.source):
            if chunk.startswith("## "):
                inside = chunk.split("\n", 1)[0].strip() == EXERCISES_HEADING
            if not inside:
                cells.append(nbformat.v4.new_markdown_cell(chunk) if chunk != cell.source else cell)
                continue
            kept: list[str] = []
            for title, block in _blocks(chunk):
                if title is not None and title.startswith(DISCUSSION_TITLE):
                    continue
                kept.append(block)
                if title is not None and title.startswith("Exercise"):
                    cells.append(nbformat.v4.new_markdown_cell("\n".join(kept).strip("\n")))
                    cells.append(nbformat.v4.new_code_cell(PLACEHOLDER.format(title=title)))
                    kept = []
                    prompts += 1
            rest = "\n".join(kept).strip("\n")
            if rest:
                cells.append(nbformat.v4.new_markdown_cell(rest))
    if prompts == 0:
        raise ValueError(f"{chapter}: no exercise prompts found (admonitions titled 'Exercise …' "
                         f"under '{EXERCISES_HEADING}').")
    notebook.cells = cells
    return notebook


def write_student_copies(folder: Path) -> list[Path]:
    """Write the student copy of every chapter into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in present().items():
        target = folder / f"{name}.ipynb"
        nbformat.write(student_copy(path), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the notebooks")
    args = parser.parse_args(argv)
    for path in write_student_copies(args.folder):
        copy = nbformat.read(path, as_version=4)
        answers = sum(c.cell_type == "code" and c.source.startswith("# Your answer") for c in copy.cells)
        print(f"{path}: {answers} exercises to answer")


if __name__ == "__main__":
    main()
