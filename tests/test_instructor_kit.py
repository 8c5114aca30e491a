"""The instructors' kit: chapter map, generated tables and student copies agree with the chapters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import book_tables  # noqa: E402
import chapter_map  # noqa: E402
import student_copies  # noqa: E402
from chapters import CHAPTERS, present  # noqa: E402

PRESENT = present()


def test_every_chapter_is_on_the_map_and_builds_on_known_chapters():
    assert set(PRESENT) <= set(CHAPTERS), "add the new chapter to tools/chapters.py"
    for name, chapter in CHAPTERS.items():
        assert set(chapter.builds_on) <= set(CHAPTERS) - {name}
        assert chapter.prerequisites.endswith(".")


def test_committed_map_is_what_the_script_draws():
    committed = chapter_map.OUTPUT.read_text(encoding="utf-8")
    assert committed == chapter_map.render(set(PRESENT)), "run python tools/chapter_map.py"
    assert "(planned)" not in chapter_map.render(set(CHAPTERS))


def test_parameters_table_is_generated_from_the_cells():
    assert book_tables.write_or_check(book_tables.GENERATED / "chapter_parameters.txt",
                                      book_tables.parameters_table(), check=True)
    assert book_tables.knobs(PRESENT["sldd"])[0][:2] + ("",) == ("profile", "None", "")


def test_prerequisites_table_is_generated_from_the_chapter_list():
    assert book_tables.write_or_check(book_tables.GENERATED / "chapter_prerequisites.txt",
                                      book_tables.prerequisites_table(), check=True)


def test_knobs_read_names_defaults_and_comments(tmp_path):
    page = tmp_path / "c.md"
    page.write_text("# C\n\n```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = None  # world\n"
                    "n = 3\n```\n")
    assert book_tables.knobs(page) == [("profile", "None", "world"), ("n", "3", "")]
    page.write_text("# C\n\n```{code-cell} ipython3\nx = 1\n```\n")
    with pytest.raises(ValueError, match="parameters"):
        book_tables.knobs(page)


def test_costs_table_shows_measured_runs_and_marks_the_rest():
    measured = {"sldd": {"seconds": 24.3, "peak_mib": 1536, "passed": True, "cpus": 2},
                "qpm": {"seconds": 40.0, "peak_mib": 2048, "passed": False, "cpus": 2}}
    table = book_tables.costs_table(measured)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()
            if line.startswith("| ") and "---" not in line}
    sldd = next(row for title, row in rows.items() if "SLDD" in title)
    assert "24 s" in sldd and "1.5 GiB" in sldd and "CUB-200-2011" in sldd
    assert "40 s (failed)" in next(row for title, row in rows.items() if title.startswith("QPM"))
    assert "not measured" in next(row for title, row in rows.items() if "Getting started" in title)
    assert "2 CPU cores" in table


def test_costs_command_writes_the_table_and_ci_requires_every_chapter(tmp_path, monkeypatch):
    monkeypatch.setattr(book_tables, "GENERATED", tmp_path)
    measured = tmp_path / "costs.json"
    runs = {name: {"seconds": 12.0, "peak_mib": 512, "passed": True, "cpus": 2} for name in PRESENT}
    measured.write_text(json.dumps(runs))
    assert book_tables.main(["costs", "--measured", str(measured), "--require-all"]) == 0
    assert "| 12 s | 0.5 GiB | " in (tmp_path / "chapter_costs.txt").read_text()
    assert book_tables.main(["costs", "--measured", str(measured), "--check"]) == 0
    measured.write_text(json.dumps({"vpp": runs["vpp"]}))
    assert book_tables.main(["costs", "--measured", str(measured), "--check"]) == 1
    assert book_tables.main(["costs", "--measured", str(measured), "--require-all"]) == 1


@pytest.mark.parametrize("name", sorted(PRESENT))
def test_student_copy_keeps_prompts_and_drops_solutions(name):
    chapter = jupytext.read(PRESENT[name])
    copy = student_copies.student_copy(PRESENT[name])
    original = [c.source for c in chapter.cells if c.cell_type == "code"]
    kept = [c.source for c in copy.cells if c.cell_type == "code"]
    answers = [s for s in kept if s.startswith("# Your answer to Exercise")]
    before = [s for s in kept if not s.startswith("# Your answer")]
    # the code before the exercises is the chapter's, unchanged and in order; nothing after it
    assert before == original[:len(before)]
    solutions = original[len(before):]
    assert solutions, "the chapter's exercises have no solution code"
    assert not any(s in kept for s in solutions)
    text = "\n".join(c.source for c in copy.cells if c.cell_type == "markdown")
    source = PRESENT[name].read_text(encoding="utf-8")
    assert len(answers) == source.count("{admonition} Exercise") == text.count("{admonition} Exercise")
    assert student_copies.DISCUSSION_TITLE not in text
    assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")


def test_discussions_are_removed_and_unclosed_admonitions_refused(tmp_path):
    page = tmp_path / "c.md"
    page.write_text("---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
                    "  name: python3\n  display_name: Python 3\n---\n# C\n\n## Exercises\n\n"
                    ":::{admonition} Exercise 1\nDo it.\n:::\n\n```{code-cell} ipython3\nanswer = 42\n```\n\n"
                    ":::{admonition} What this shows\n:class: dropdown\nIt is 42.\n:::\n\n"
                    "## Further reading\n\nA book.\n")
    copy = student_copies.student_copy(page)
    sources = [c.source for c in copy.cells]
    assert "answer = 42" not in sources and not any("It is 42" in s for s in sources)
    assert "# Your answer to Exercise 1\n" in sources and any("A book." in s for s in sources)
    page.write_text(page.read_text().replace(":::\n\n## Further", "\n## Further"))
    with pytest.raises(ValueError, match="never closed"):
        student_copies.student_copy(page)


def test_a_student_copy_executes_up_to_its_exercises(tmp_path, monkeypatch):
    """Getting started's copy runs in the smoke world (the others differ from their chapters only
    after the exercises begin, which the test above checks, and nbmake runs the chapters)."""
    monkeypatch.setenv("COMPANION_PROFILE", "smoke")
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "cache"))
    copy = student_copies.student_copy(PRESENT["getting_started"])
    NotebookClient(copy, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    errors = [o for c in copy.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    nbformat.validate(copy)
