"""The SLDD and QPM chapters' full-world path (CUB-200-2011, timm backbone) on a tiny CUB fixture.

Each chapter runs end to end with profile "full" and real data on, its parameters overridden as
papermill would (a cell after the one tagged ``parameters``): the fixture as ``cub_root``, a small
timm ResNet with random weights, small images and one epoch. Nothing is downloaded.
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

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from cub_fixture import CLASS_FOLDERS, write_tiny_cub  # noqa: E402

pytestmark = pytest.mark.slow

BOOK = Path(__file__).resolve().parents[1] / "book"
N_CLASSES = len(CLASS_FOLDERS)
PER_CLASS = 4  # images per class in the fixture: 6 training and 6 test images


def with_parameters(nb: nbformat.NotebookNode, **values) -> nbformat.NotebookNode:
    """Insert a cell that sets ``values`` right after the cell tagged ``parameters``."""
    tagged = [i for i, cell in enumerate(nb.cells)
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(tagged)}")
    source = "\n".join(f"{key} = {value!r}" for key, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, cell)
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    """Everything the code cells printed (stream and text/plain outputs)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "text/plain" in out.get("data", {}):
                parts.append(out.data["text/plain"])
    return "\n".join(parts)


@pytest.fixture(scope="module")
def full_world(tmp_path_factory):
    """Run a chapter in the full world on the fixture; returns (printed text, its cache folder,
    the executed notebook)."""
    root = tmp_path_factory.mktemp("cub")
    write_tiny_cub(root, per_class=PER_CLASS)
    runs = {}

    def run(chapter: str):
        if chapter in runs:
            return runs[chapter]
        mp = pytest.MonkeyPatch()
        cache = tmp_path_factory.mktemp(f"cache_{chapter}")
        for key, value in {"COMPANION_CACHE": str(cache), "COMPANION_PROFILE": "full",
                           "COMPANION_REAL_DATA": "1", "HF_HUB_OFFLINE": "1",
                           "OMP_NUM_THREADS": "1"}.items():
            mp.setenv(key, value)
        nb = with_parameters(jupytext.read(BOOK / f"{chapter}.md"), profile="full",
                             cub_root=str(root), backbone="timm:test_resnet", pretrained=False,
                             image_size=64, epochs=1, ft_epochs=1)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(cache)}})
        start = time.perf_counter()
        try:
            client.execute()
        finally:
            mp.undo()
        print(f"{chapter}: full world on the fixture in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        assert not (cache / "cub").exists()  # the data came from cub_root, nothing was downloaded
        runs[chapter] = text_of(nb), cache, nb
        return runs[chapter]

    return run


def has_figure(nb: nbformat.NotebookNode, code: str) -> bool:
    """Whether the cell whose source contains ``code`` drew a picture."""
    cell, = [c for c in nb.cells if c.cell_type == "code" and code in c.source]
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_sldd_full_world_runs_to_the_end(full_world):
    text, cache, nb = full_world("sldd")
    assert "Profile(name='full'" in text and "real_data=True" in text
    assert f"{N_CLASSES} classes, {N_CLASSES * PER_CLASS // 2} training and " \
           f"{N_CLASSES * PER_CLASS // 2} test images" in text
    # the dense model is the timm backbone (timm's test ResNet: 96 features), not the small CNN
    assert "dense model: 96 features" in text
    # the results table: our numbers beside the paper's
    assert re.search(r"sparse accuracy\s+\d+\.\d%\s+CUB 85\.7 %", text), text
    assert re.search(r"kept of dense accuracy\s+\S+\s+97 % – 100 %", text)
    n_f, k = re.search(r"features n_f / per class k\s+(\d+) / (\d+\.\d)\s+50 / 5", text).groups()
    assert int(n_f) <= 50 and float(k) <= 5.0
    assert "k = 4: test accuracy before fine-tuning" in text
    assert text.count("random features, trial") == 3
    # one decision explained and a class shown with its features' maps, on real images too
    assert has_figure(nb, "decision_figure(show_images[i]")
    assert has_figure(nb, "static_figure(class_figure")
    # checkpoints are named after the backbone and image size, so a changed knob never resumes them
    assert sorted(p.name for p in (cache / "sldd").iterdir()) == [
        "dense_full_True_test_resnet_64px.pt", "sparse_full_True_test_resnet_64px.pt"]


def test_qpm_full_world_runs_to_the_end(full_world):
    text, _, nb = full_world("qpm")
    assert "Profile(name='full'" in text and "real_data=True" in text
    assert "dense model: 96 features" in text
    # every class gets exactly k = 5 features and its own signature
    assert f"features per class: [5] | distinct class signatures: {N_CLASSES} of {N_CLASSES}" in text
    # the results table: our numbers beside the paper's
    assert re.search(r"accuracy\s+\d\.\d{3}\s+\d\.\d{3}\s+0\.839  0\.829", text), text
    assert re.search(r"sid\s+\S+\s+\S+\s+0\.571  0\.896", text)
    assert re.search(r"features used / k\s+96\s+\d+\s+2048 / all   50 / 5", text)
    assert "structural grounding: QPM" in text
    assert has_figure(nb, "plot_contrastive_pair(images")
    assert re.search(r"heuristic \S+ \(bound .*\) vs exact", text)  # the last exercise
