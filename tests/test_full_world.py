"""The chapters' full-world paths on tiny fixtures: SLDD and QPM (CUB-200-2011, timm ResNet) and
VPP (DAVIS 2017, timm ViT).

Each chapter runs end to end with profile "full" and real data on, its parameters overridden as
papermill would (a cell after the one tagged ``parameters``): the fixture as data root, a small
timm model with random weights, small images and one epoch. Nothing is downloaded.
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
from davis_fixture import write_tiny_davis  # noqa: E402

pytestmark = pytest.mark.slow

BOOK = Path(__file__).resolve().parents[1] / "book"
N_CLASSES = len(CLASS_FOLDERS)
PER_CLASS = 4  # images per class in the fixture: 6 training and 6 test images
DAVIS_FRAMES = 16  # frames per DAVIS sequence: two 8-frame clips each


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
    """Run a chapter in the full world on its fixture; returns (printed text, its cache folder,
    the executed notebook)."""
    cub, davis = tmp_path_factory.mktemp("cub"), tmp_path_factory.mktemp("davis")
    write_tiny_cub(cub, per_class=PER_CLASS)
    write_tiny_davis(davis, sequences=("bear", "car", "dog"), n_frames=DAVIS_FRAMES, size=(24, 40),
                     train=("bear", "car"))
    cub_knobs = {"cub_root": str(cub), "backbone": "timm:test_resnet", "pretrained": False,
                 "image_size": 64, "epochs": 1, "ft_epochs": 1}
    davis_knobs = {"davis_root": str(davis), "backbone": "vit_tiny_patch16_224",
                   "pretrained": False, "image_size": 64, "dense_epochs": 1, "sparse_epochs": 1}
    knobs = {"sldd": (cub_knobs, "cub"), "qpm": (cub_knobs, "cub"), "vpp": (davis_knobs, "davis")}
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
        values, data = knobs[chapter]
        nb = with_parameters(jupytext.read(BOOK / f"{chapter}.md"), profile="full", **values)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(cache)}})
        start = time.perf_counter()
        try:
            client.execute()
        finally:
            mp.undo()
        print(f"{chapter}: full world on the fixture in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        assert not (cache / data).exists()  # the data came from the fixture, nothing was downloaded
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


def test_vpp_full_world_runs_to_the_end(full_world):
    text, _, nb = full_world("vpp")
    assert "Profile(name='full'" in text and "real_data=True" in text
    # the models are the timm ViT-Tiny (width 192) on 64-pixel frames: 4 × 4 patches of 16 pixels
    assert re.search(r"^16 tokens, one block [\d.]+ MFLOPs; the 12 blocks", text, re.MULTILINE)
    assert re.search(r"^dense loss per epoch: \d+\.\d+$", text, re.MULTILINE)
    # the results table: every model with its kept ratio and class-agnostic AP
    for name in ("dense ", "VPP ", "later layers only ", r"ToMe \(r=\d+\)"):
        row = rf"^{name}\s*\d\.\d\d\s+\d\.\d{{3}}\s+\d\.\d{{3}}\s+\d\.\d{{3}}$"
        assert re.search(row, text, re.MULTILINE), name
    # FLOPs and time, the width sweep of the full world, and every verdict of the claim
    assert re.search(r"^VPP\s+\d+\s+[\d.]+\s+[\d.]+×$", text, re.MULTILINE)
    assert re.findall(r"^width\s+(\d+):", text, re.MULTILINE) == ["192", "384", "768"]
    assert len(re.findall(r"^(?:holds|fails)  ", text, re.MULTILINE)) == 7
    assert re.search(r"^(?:holds|fails)  speed-up of our width-192 model", text, re.MULTILINE)
    assert has_figure(nb, "plot_accuracy_vs_keep(curves")
    # the paper's table stays beside our numbers
    assert any("ViT-Adapter-S, VPP" in c.source for c in nb.cells if c.cell_type == "markdown")
