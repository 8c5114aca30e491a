"""The rehearsal tier: each chapter's full-world path on CPU at the real datasets' shapes.

CUB-200-2011 as written by ``write_real_shapes_cub`` (200 classes, 5,994 training and 5,794 test
images in class order, 32-pixel JPEGs, every annotation file), the chapters' real settings (SLDD:
n_f = 50, k = 5, 100 points on the path; QPM: n_f = 50, k = 5, 256 candidate features) with the
solver's time limit scaled down, a tiny timm backbone with random weights and one epoch.
Run it with ``pytest -m rehearsal tests/rehearsal`` (see book/contributing.md).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "data"))
sys.path.insert(0, str(TESTS))
from cub_fixture import REAL_N_CLASSES, REAL_N_TEST, REAL_N_TRAIN, write_real_shapes_cub  # noqa: E402
from test_full_world import text_of, with_parameters  # noqa: E402

pytestmark = pytest.mark.rehearsal

BOOK = TESTS.parent / "book"
SOLVER_SECONDS = 20  # the QPM solver's time limit (the chapter's full world: 600 s)
CUB_KNOBS = {"backbone": "timm:test_resnet", "pretrained": False, "image_size": 32, "epochs": 1,
             "ft_epochs": 1}


def with_constants(nb: nbformat.NotebookNode, after: str, **values) -> nbformat.NotebookNode:
    """Insert a cell that sets ``values`` right after the one code cell containing ``after``."""
    found = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and after in cell.source]
    if len(found) != 1:
        raise ValueError(f"expected one code cell containing {after!r}, found {len(found)}")
    source = "\n".join(f"{key} = {value!r}" for key, value in values.items())
    nb.cells.insert(found[0] + 1, nbformat.v4.new_code_cell(source))
    return nb


@pytest.fixture(scope="session")
def real_cub(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cub_real_shapes")
    write_real_shapes_cub(root)
    return root


@pytest.fixture(scope="session")
def rehearse(tmp_path_factory, real_cub):
    """Run a chapter in the full world on the real-shapes fixture; returns (printed text, cache).

    The classification chapters share one cache, as a reader's do: QPM starts from the dense
    model that SLDD trained (whichever runs first trains it).
    """
    cache = tmp_path_factory.mktemp("cache_rehearsal")
    runs = {}

    def run(chapter: str, constants: tuple[str, dict] | None = None):
        if chapter in runs:
            return runs[chapter]
        mp = pytest.MonkeyPatch()
        for key, value in {"COMPANION_CACHE": str(cache), "COMPANION_PROFILE": "full",
                           "COMPANION_REAL_DATA": "1", "HF_HUB_OFFLINE": "1"}.items():
            mp.setenv(key, value)
        nb = with_parameters(jupytext.read(BOOK / f"{chapter}.md"), profile="full",
                             cub_root=str(real_cub), **CUB_KNOBS)
        if constants is not None:
            nb = with_constants(nb, constants[0], **constants[1])
        client = NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(cache)}})
        start = time.perf_counter()
        try:
            client.execute()
        finally:
            mp.undo()
        print(f"{chapter}: rehearsal in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        assert not (cache / "cub").exists()  # the data came from the fixture, nothing downloaded
        runs[chapter] = text_of(nb), cache
        return runs[chapter]

    return run


def verdicts(text: str) -> list[tuple[str, str]]:
    """(verdict, claim) of every row of a claims table."""
    return re.findall(r"^(holds|fails|not computed):\s*(.+)$", text, re.MULTILINE)


def test_the_fixture_has_cubs_real_shapes(real_cub):
    from companion.data.cub import cub_splits

    cub = cub_splits(real_cub, image_size=32, download=False)
    assert (len(cub.train), len(cub.test), cub.n_classes) == (REAL_N_TRAIN, REAL_N_TEST,
                                                             REAL_N_CLASSES)
    # in class order, as the real files are: the first 1500 training images are about 50 classes
    assert len(set(cub.train.targets[:1500])) <= 51
    assert cub.train.attributes.shape == (REAL_N_TRAIN, 312)
    assert cub.train.class_attribute_matrix().shape == (REAL_N_CLASSES, 312)


def test_sldd_rehearsal(rehearse):
    text, cache = rehearse("sldd")
    assert "Profile(name='full'" in text and "real_data=True" in text
    assert f"{REAL_N_CLASSES} classes, {REAL_N_TRAIN} training and {REAL_N_TEST} test images" in text
    assert "dense model: 96 features" in text
    assert "nan" not in text.lower()
    assert re.search(r"^accuracy\s+\d\.\d{3}\s+\d\.\d{3}\s+0\.857 \[1\]$", text, re.M), text
    n_f = re.search(r"^features used\s+96\s+(\d+)\s+50 \[2\]$", text, re.M).group(1)
    k = re.search(r"^features per class\s+96\.000\s+(\d\.\d{3})\s+5 \[3\]$", text, re.M).group(1)
    assert 0 < int(n_f) <= 50 and 0 < float(k) <= 5.0
    rows = verdicts(text)
    assert rows and all(v in ("holds", "fails", "not computed") for v, _ in rows)
    assert [p.name for p in (cache / "sldd").iterdir()][0].startswith("sparse_50x5_")


def test_qpm_rehearsal(rehearse):
    text, _ = rehearse("qpm", ("N_FEATURES = P.pick", {"SOLVER_SECONDS": SOLVER_SECONDS}))
    assert f"{REAL_N_CLASSES} classes, {REAL_N_TRAIN} training and {REAL_N_TEST} test images" in text
    assert "n_f = 50, k = 5" in text
    assert "nan" not in text.lower()
    # the locality bias: maps of a class-balanced subset (7 of every class), all pooled rows
    assert f"features ({REAL_N_TRAIN}, 96), maps (1400, 96," in text
    # the solver says honestly what it proved: optimal with a tiny gap, or stopped at the limit
    status, gap = re.search(r"^\w+: (\w+), objective -?[\d.]+, bound -?[\d.]+, gap ([\d.]+)%$",
                            text, re.M).groups()
    assert status in ("optimal", "time_limit"), status
    assert status == "time_limit" or float(gap) <= 0.01
    assert re.search(r"^[\d.]+ s, \d+ lazy rounds, 96 candidate features$", text, re.M)
    assert (f"features per class: [5] | distinct class signatures: {REAL_N_CLASSES} of "
            f"{REAL_N_CLASSES}") in text
    rows = dict((claim, v) for v, claim in verdicts(text))
    assert rows and all(v in ("holds", "fails", "not computed") for v in rows.values())
    assert re.search(r"^features used\s+96\s+\d+\s+2048 \[1\]\s+50 \[1\]$", text, re.M)
    assert re.search(r"heuristic \S+ \(bound .*\) vs exact", text)
