"""What the full world costs: one table, printed before anything heavy, and the chapters' notes."""

from __future__ import annotations

import pytest
import torch

from companion import Profile
from companion.worlds import COSTS, SWITCH, colab_note, describe_world


def test_full_world_names_time_downloads_gpu_and_the_switch(capsys) -> None:
    describe_world("sldd", Profile("full", torch.device("cpu"), real_data=True))
    out = capsys.readouterr().out
    for needed in ("about an hour", "CUB-200-2011 (1.2 GB)", "16 GB Colab T4", SWITCH):
        assert needed in out


@pytest.mark.parametrize("chapter", sorted(COSTS))
def test_printout_fits_the_page_and_lists_every_download(chapter: str, capsys) -> None:
    describe_world(chapter, Profile("full", torch.device("cuda"), real_data=True))
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80, "output lines fit the page"
    assert all(str(d) in out for d in COSTS[chapter].downloads)


def test_smoke_world_says_one_line_and_no_path(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    describe_world("vpp", Profile("smoke", torch.device("cpu")))
    out = capsys.readouterr().out
    assert out == "smoke world: synthetic data, no downloads, about 2 minutes\n"


def test_full_world_without_real_data_downloads_nothing(capsys) -> None:
    describe_world("usam", Profile("full", torch.device("cpu"), real_data=False))
    out = capsys.readouterr().out
    assert "no downloads" in out and "SAM 2.1" not in out


@pytest.mark.parametrize("chapter", sorted(COSTS))
def test_note_states_every_download_and_the_switch(chapter: str) -> None:
    note = " ".join(colab_note(chapter).split())
    assert note.startswith(":::{admonition} Running on Colab :class: note ") and note.endswith(":::")
    for download in COSTS[chapter].downloads:
        assert str(download) in note
    assert f"`{SWITCH}`" in note and COSTS[chapter].smoke_time in note


def test_unknown_chapter_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="getting_started"):
        describe_world("nope")
