"""The package's progress bar: a finished leave=False notebook bar leaves no blank gap."""

from __future__ import annotations

import pytest
from tqdm.notebook import tqdm_notebook

from companion import progress


@pytest.fixture
def bar_class():
    return progress._removes_finished_bars(tqdm_notebook)


def test_a_finished_bar_with_leave_false_is_taken_out_of_the_layout(bar_class, capsys) -> None:
    bar = bar_class(total=3, leave=False, desc="path")
    bar.update(3)
    bar.close()
    capsys.readouterr()  # outside a kernel the widget's repr is printed
    layout = bar.container.layout
    assert layout.display == "none"
    assert layout.visibility != "hidden"  # tqdm's own hiding keeps the bar's height


def test_a_kept_bar_stays_and_ends_complete(bar_class, capsys) -> None:
    bar = bar_class(total=3, leave=True, desc="train")
    bar.update(3)
    bar.close()
    capsys.readouterr()
    assert bar.container.layout.display != "none"
    assert bar.container.children[1].bar_style == "success"


def test_an_interrupted_bar_stays_visible_in_red(bar_class, capsys) -> None:
    bar = bar_class(total=3, leave=False)
    bar.update(1)
    bar.close()
    capsys.readouterr()
    assert bar.container.layout.display != "none"
    assert bar.container.children[1].bar_style == "danger"


def test_outside_a_notebook_the_bar_is_tqdm_auto() -> None:
    from tqdm.auto import tqdm as auto

    assert progress.tqdm is auto or issubclass(progress.tqdm, auto)
