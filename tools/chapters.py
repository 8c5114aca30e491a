"""What an instructor needs to know about each chapter: what it builds on and what a reader should know.

``CHAPTERS`` is the one place this lives. The chapter map in the introduction
(``tools/chapter_map.py``) and the instructors' page are drawn from it, and a test keeps it in step
with the table of contents.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))

import book_files  # noqa: E402

__all__ = ["CHAPTERS", "Chapter", "chapter_title", "present"]


@dataclass(frozen=True)
class Chapter:
    """One chapter: its group on the map, the chapters it builds on, and what a reader needs first."""

    short: str                      # the name on the map
    group: str                      # "start", "classify" or "tokens"
    builds_on: tuple[str, ...]      # chapter names (file stems)
    prerequisites: str              # one line, for the map's legend and the instructors' page


CHAPTERS: dict[str, Chapter] = {
    "getting_started": Chapter("Getting started", "start", (),
                               "Python and basic PyTorch: tensors, a model, a training loop."),
    "sldd": Chapter("SLDD", "classify", ("getting_started",),
                    "Logistic regression with L1 and elastic-net penalties."),
    "qsenn": Chapter("Q-SENN", "classify", ("sldd",),
                     "Its dense model, feature selection and regularisation path come from SLDD."),
    "qpm": Chapter("QPM", "classify", ("sldd",),
                   "What an integer (binary) program is; the rest is explained."),
    "chiqpm": Chapter("CHiQPM", "classify", ("qpm",),
                      "Nothing about conformal prediction: the chapter derives it."),
    "dino_qpm": Chapter("DINO-QPM", "classify", ("qpm",),
                        "Vision transformers and their patch tokens."),
    "usam": Chapter("UncertainSAM", "tokens", ("getting_started",),
                    "A vision transformer's tokens; entropy."),
    "vpp": Chapter("Video Patch Pruning", "tokens", ("getting_started",),
                   "A vision transformer's blocks and what they cost in FLOPs."),
}

TITLE = re.compile(r"^# (.+)$", re.MULTILINE)


def present(root: Path = ROOT) -> dict[str, Path]:
    """The chapters of the table of contents that exist now, by name, in reading order."""
    return {path.stem: path for path in book_files.chapters(root)}


def chapter_title(path: Path) -> str:
    """The chapter's title: its first level-one heading."""
    match = TITLE.search(path.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{path} has no '# Title' heading.")
    return match.group(1).strip()
