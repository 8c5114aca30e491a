"""What each chapter's full world costs (time, downloads, GPU memory), said before anything heavy runs.

``COSTS`` is the one place these numbers live: the set-up cell of every chapter prints them
(:func:`describe_world`) and the chapter's "Running on Colab" note is :func:`colab_note`'s text,
which a test keeps equal. Full-world times are design targets, not measurements.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from .runtime import Profile, cache_dir, get_profile

__all__ = ["COSTS", "Download", "WorldCost", "colab_note", "describe_world"]

GPU_TARGET = "a 16 GB Colab T4"
SWITCH = 'profile = "smoke"'


@dataclass(frozen=True)
class Download:
    """One thing the full world downloads, once, into the cache."""

    what: str
    size: str  # as a reader reads it: "1.2 GB", "about 100 MB"

    def __str__(self) -> str:
        return f"{self.what} ({self.size})"


@dataclass(frozen=True)
class WorldCost:
    """The cost of one chapter: the full world's time, downloads and GPU memory; the smoke world's time."""

    title: str
    full_time: str
    downloads: tuple[Download, ...]
    smoke_time: str
    gpu: str = GPU_TARGET  # the GPU whose memory the full world is expected to fit


CUB = Download("CUB-200-2011", "1.2 GB")
RESNET50 = Download("ImageNet ResNet-50 weights", "about 100 MB")

COSTS: dict[str, WorldCost] = {
    "getting_started": WorldCost(
        "Getting started", "a few minutes on one GPU",
        (Download("ImageNet ResNet-18 weights", "about 45 MB"),), "about a minute"),
    "sldd": WorldCost("SLDD", "about an hour on one GPU", (CUB, RESNET50), "about 3 minutes"),
    "qpm": WorldCost(
        "QPM", "about an hour on one GPU (less when the SLDD chapter trained the dense model)",
        (CUB, RESNET50), "about 3 minutes"),
    "chiqpm": WorldCost(
        "CHiQPM", "about 90 minutes on one GPU (less when the SLDD chapter trained the dense model)",
        (CUB, RESNET50), "about a minute and a half"),
    "qsenn": WorldCost(
        "Q-SENN", "about an hour on one GPU (less when the SLDD chapter trained the dense model)",
        (CUB, RESNET50), "about 2 minutes"),
    "usam": WorldCost(
        "UncertainSAM", "about an hour on one GPU",
        (Download("SAM 2.1 tiny and large checkpoints", "about 150 MB and 900 MB"),
         Download("COCO val2017 images and annotations", "about 0.8 GB and 0.25 GB")),
        "about 2 minutes"),
    "vpp": WorldCost(
        "Video Patch Pruning", "about an hour on one GPU",
        (Download("DAVIS 2017 480p", "about 0.8 GB"),
         Download("DINOv2 ViT-S/14 weights", "about 90 MB")),
        "about 2 minutes"),
    "dino_qpm": WorldCost(
        "DINO-QPM", "about an hour on one GPU, token caching included",
        (CUB, Download("CUB-200-2011 segmentations", "about 40 MB"),
         Download("DINOv2 ViT-S/14 weights", "about 90 MB")), "about 90 seconds"),
}


def _cost(chapter: str) -> WorldCost:
    if chapter not in COSTS:
        raise KeyError(f"No cost is recorded for chapter {chapter!r}; expected one of {sorted(COSTS)}.")
    return COSTS[chapter]


def colab_note(chapter: str) -> str:
    """The chapter's "Running on Colab" admonition, as MyST Markdown (the chapter holds this text)."""
    cost = _cost(chapter)
    items = [str(d) for d in cost.downloads]
    downloads = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    body = (f"On a GPU runtime this chapter runs the full world: {cost.full_time}, in GPU memory "
            f"expected to fit {cost.gpu}. "
            f"It first downloads, once, into the cache: {downloads}. "
            f"For the smoke world instead (synthetic data, no downloads, {cost.smoke_time} even on a "
            f"CPU), set `{SWITCH}` in the `parameters` cell below. The set-up cell prints these "
            "costs again before anything heavy starts.")
    text = textwrap.fill(body, width=100, break_on_hyphens=False)
    return ":::{admonition} Running on Colab\n:class: note\n" + text + "\n:::"


def describe_world(chapter: str, profile: Profile | None = None) -> None:
    """Print what the active world will cost this chapter, and how to switch to the smoke world."""
    cost, P = _cost(chapter), profile or get_profile()
    if P.is_smoke:
        print(f"smoke world: synthetic data, no downloads, {cost.smoke_time}")
        return
    if not P.real_data:
        print(f"full world on {P.device}, synthetic data (real data is off): no downloads,\n"
              f"  minutes to tens of minutes; GPU memory expected to fit {cost.gpu}")
        return
    indent = " " * 13
    lines = [f"full world on {P.device}: {cost.title} with the real data",
             textwrap.fill(f"time:      {cost.full_time}, plus the downloads", 80,
                           initial_indent="  ", subsequent_indent=indent),
             f"  downloads: once, into {cache_dir()}:",
             *(f"{indent}{d}" for d in cost.downloads),
             f"  GPU:       memory expected to fit {cost.gpu}",
             f"  smoke world instead ({cost.smoke_time}, no downloads): set",
             f"  {SWITCH} in the parameters cell and run the chapter again"]
    print("\n".join(lines))
