"""Draw the chapter map of the introduction: which chapter builds on which.

    python tools/chapter_map.py            # writes book/images/chapter_map.svg

Chapters that are in ``tools/chapters.py`` but not yet in the table of contents are drawn dashed,
as planned. A test checks that the committed image is what this script draws.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chapters import CHAPTERS, ROOT, present  # noqa: E402

OUTPUT = ROOT / "book" / "images" / "chapter_map.svg"
# (x, y) of each box centre, in axes units: Getting started on the left, the classifier lineage at
# the top, the two token methods below it.
POSITION = {"getting_started": (0.12, 0.45), "sldd": (0.37, 0.70), "qsenn": (0.63, 0.84),
            "qpm": (0.63, 0.56), "chiqpm": (0.88, 0.70), "dino_qpm": (0.88, 0.42),
            "usam": (0.37, 0.10), "vpp": (0.63, 0.10)}
COLOUR = {"start": "#dddddd", "classify": "#cfe2f3", "tokens": "#fce5cd"}
# (x0, y0, x1, y1) of the shaded band behind each group, and its caption
BAND = {"classify": ((0.26, 0.29, 0.995, 0.995), "Interpretable classification: one pipeline, "
                     "one dense model"),
        "tokens": ((0.26, -0.03, 0.995, 0.24), "Segmentation and video: read a transformer's tokens")}
BOX_W, BOX_H = 0.20, 0.12


def draw(available: set[str]) -> plt.Figure:
    """The map as a figure; chapters not in ``available`` are drawn dashed and marked planned."""
    missing = set(CHAPTERS) - set(POSITION)
    if missing:
        raise KeyError(f"chapters {sorted(missing)} have no position on the map; add them to POSITION.")
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    ax.set(xlim=(0, 1), ylim=(-0.04, 1.02))
    ax.axis("off")
    for group, ((x0, y0, x1, y1), caption) in BAND.items():
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.0,rounding_size=0.02",
                                    facecolor=COLOUR[group], alpha=0.25, edgecolor="none"))
        ax.text(x1 - 0.01, y1 - 0.02, caption, ha="right", va="top", fontsize=9, color="#333333")
    for name, chapter in CHAPTERS.items():
        x, y = POSITION[name]
        planned = name not in available
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0.01", facecolor=COLOUR[chapter.group],
                                    edgecolor="#555555", linestyle="--" if planned else "-"))
        label = chapter.short + ("\n(planned)" if planned else "")
        ax.text(x, y, label, ha="center", va="center", fontsize=10)
        for parent in chapter.builds_on:
            px, py = POSITION[parent]
            start = (px + BOX_W / 2, py)
            end = (x - BOX_W / 2, y) if abs(px - x) > BOX_W else (x, y + BOX_H / 2)
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12,
                                         color="#444444", shrinkA=2, shrinkB=2))
    fig.tight_layout(pad=0.2)
    return fig


def render(available: set[str]) -> str:
    """The map as SVG text, byte-for-byte reproducible (fixed ids, no date)."""
    plt.rcParams["svg.hashsalt"] = "chapter-map"
    fig = draw(available)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    args.output.write_text(render(set(present())), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
