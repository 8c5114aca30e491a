"""The chapters' full-world paths on tiny fixtures: SLDD, QPM and Q-SENN (CUB-200-2011, timm ResNet) and
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
import numpy as np
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


def execute_full_world(nb: nbformat.NotebookNode, cache: Path, *, timeout: int, **env: str) -> float:
    """Execute ``nb`` in the full world (real data on) with ``cache`` as its cache; returns seconds."""
    mp = pytest.MonkeyPatch()
    for key, value in {"COMPANION_CACHE": str(cache), "COMPANION_PROFILE": "full",
                       "COMPANION_REAL_DATA": "1", "HF_HUB_OFFLINE": "1", **env}.items():
        mp.setenv(key, value)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cache)}})
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        mp.undo()
    return time.perf_counter() - start


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
    knobs = {"sldd": (cub_knobs, "cub"), "qpm": (cub_knobs, "cub"), "qsenn": (cub_knobs, "cub"),
             "vpp": (davis_knobs, "davis")}
    runs = {}

    def run(chapter: str):
        if chapter in runs:
            return runs[chapter]
        cache = tmp_path_factory.mktemp(f"cache_{chapter}")
        values, data = knobs[chapter]
        nb = with_parameters(jupytext.read(BOOK / f"{chapter}.md"), profile="full", **values)
        seconds = execute_full_world(nb, cache, timeout=600, OMP_NUM_THREADS="1")
        print(f"{chapter}: full world on the fixture in {seconds:.0f} s", file=sys.stderr)
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
    # the report: our numbers beside the paper's, each with its source
    assert re.search(r"^accuracy\s+\d\.\d{3}\s+\d\.\d{3}\s+0\.857 \[1\]$", text, re.M), text
    n_f = re.search(r"^features used\s+96\s+(\d+)\s+50 \[2\]$", text, re.M).group(1)
    k = re.search(r"^features per class\s+96\.000\s+(\d\.\d{3})\s+5 \[3\]$", text, re.M).group(1)
    assert int(n_f) <= 50 and float(k) <= 5.0
    assert "[1] CUB-200-2011 top-1 of SLDD as listed by sotaverified.org" in text
    assert re.search(r"(holds|fails|within noise): share of the dense accuracy kept, fine-tuned", text)
    # CUB has no part maps: the alignment claims are not computed, never a false verdict
    assert "not computed: features fire on parts" in text
    assert "k = 4: test accuracy before fine-tuning" in text
    assert text.count("random features, trial") == 1  # one draw in the full world
    # one decision explained and a class shown with its features' maps, on real images too
    assert has_figure(nb, "plot_decision(images[i]")
    assert has_figure(nb, "class_explorer(class_names=class_names")  # its bundle holds the PNG
    # one dense model, named after data, backbone and fingerprint, and the fine-tuned one beside
    dense = sorted(p.name for p in (cache / "dense").iterdir())
    assert len(dense) == 2 and dense[1] == dense[0].replace(".pt", ".train.pt")
    assert re.fullmatch(r"cub-[0-9a-f]{10}_test_resnet_[0-9a-f]{16}\.pt", dense[0])
    assert [p.name for p in (cache / "sldd").iterdir()] == [f"sparse_50x5_{dense[0]}"]


def test_qpm_full_world_runs_to_the_end(full_world):
    text, _, nb = full_world("qpm")
    assert "Profile(name='full'" in text and "real_data=True" in text
    assert "dense model: 96 features" in text
    # every class gets exactly k = 5 features and its own signature
    assert "features per class: [5]" in text
    assert f"distinct class signatures: {N_CLASSES} of {N_CLASSES}" in text
    # the locality bias comes from the maps of a class-balanced subset of the training images
    assert re.search(r"^features \(\d+, 96\)\nmaps \(\d+, 96, \d+, \d+\)$", text, re.M)
    # the report: our numbers beside the paper's, each with its source
    number = r"\d\.\d{3}"
    assert re.search(rf"^accuracy\s+{number}\s+{number}\s+0\.839 \[1\]\s+0\.829 \[1\]$", text,
                     re.M), text
    assert re.search(r"^SID@5\s+\S+\s+\S+\s+0\.571 \[1\]\s+0\.896 \[1\]$", text, re.M)
    assert re.search(r"^features used\s+96\s+\d+\s+2048 \[1\]\s+50 \[1\]$", text, re.M)
    assert "[1] DINO-QPM repository README" in text
    assert re.search(r"^structural grounding:\nQPM\s+\d\.\d\d$", text, re.M)
    assert has_figure(nb, "plot_contrastive_pair(images")
    assert re.search(r"^heuristic \S+ \(bound .*\)\nexact\s+\S+$", text, re.M)  # the last exercise


def test_qsenn_full_world_runs_to_the_end(full_world):
    text, cache, nb = full_world("qsenn")
    assert "Profile(name='full'" in text and "real_data=True" in text
    assert "dense model: 96 features" in text
    assert "n_f = 50, k = 5, epochs (1, 1, 1, 1)" in text
    assert len(re.findall(r"^iteration \d: 1 epochs at lr", text, re.M)) == 4
    assert re.search(r"^accuracy\s+\d\.\d{3}\s+\d\.\d{3}\s+0\.859 \[1\]$", text, re.M), text
    assert "[1] CUB-200-2011 top-1 of Q-SENN (ResNet-50) on the PapersWithCode" in text
    # the fixture's attribute names are placeholders of no part: names are not checked
    assert "naming not measured" in text
    assert re.search(r"not computed: names right", text)
    assert has_figure(nb, "plot_decision(images[i]")
    assert len([p for p in (cache / "qsenn").iterdir() if p.name.startswith("qsenn_50x5_4_")]) == 4


def write_image_folder(root: Path, classes=("apple", "pear", "plum"), per_class: int = 5):
    """A reader's own images: one folder of PNGs per class, each class its own colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
            pixels[..., c] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")


@pytest.mark.parametrize("chapter", ["sldd", "qpm", "qsenn"])
def test_chapter_runs_on_a_readers_image_folder(chapter, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    write_image_folder(folder)
    for key, value in {"COMPANION_CACHE": str(tmp_path / "cache"), "COMPANION_PROFILE": "full",
                       "COMPANION_REAL_DATA": "1", "HF_HUB_OFFLINE": "1",
                       "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    nb = with_parameters(jupytext.read(BOOK / f"{chapter}.md"), profile="full",
                         image_folder=str(folder), backbone="timm:test_resnet", pretrained=False,
                         image_size=32, epochs=1, ft_epochs=1)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = text_of(nb)
    # 5 images per class, 1 of them (a fifth) in the seeded, class-stratified test split
    assert "3 classes, 12 training and 3 test images" in text
    assert "dense model: 96 features" in text
    # no ground truth in a folder of images: no grounding, no alignment, no false verdict
    assert not re.search(r"^(structural grounding|features on own parts)\s", text, re.MULTILINE)
    if chapter == "qsenn":
        assert "naming not measured" in text
        assert len(re.findall(r"^iteration \d: 1 epochs at lr", text, re.M)) == 4
    elif chapter == "qpm":
        assert "features per class: [5]\ndistinct class signatures: 3 of 3" in text
        assert "structural grounding:\nQPM" not in text
        assert "not computed: structural grounding minus a random assignment's" in text
    else:
        assert "not computed: features fire on parts (× chance)" in text
        assert re.search(r"^sparse model after fine-tuning: \d+\.\d%", text, re.MULTILINE)


def test_vpp_full_world_runs_to_the_end(full_world):
    text, _, nb = full_world("vpp")
    assert "Profile(name='full'" in text and "real_data=True" in text
    # the models are the timm ViT-Tiny (width 192) on 64-pixel frames: 4 × 4 patches of 16 pixels
    assert re.search(r"^tokens per frame:\s+16$", text, re.MULTILINE)
    assert re.search(r"^one block:\s+[\d.]+ MFLOPs$", text, re.MULTILINE)
    assert re.search(r"^dense\s+loss per epoch: \d+\.\d+$", text, re.MULTILINE)
    # the results table: every model with its kept ratio and class-agnostic AP
    for name in ("dense ", "VPP ", "later layers only ", r"ToMe \(r=\d+\)"):
        row = rf"^{name}\s*\d\.\d\d\s+\d\.\d{{3}}\s+\d\.\d{{3}}\s+\d\.\d{{3}}$"
        assert re.search(row, text, re.MULTILINE), name
    # FLOPs and time, the width sweep of the full world, and every verdict of the claim
    # MFLOPs, tensor operations, median ms, IQR, speed-up
    timing = r"^VPP\s+[\d.]+\s+\d+\s+[\d.]+\s+[\d.]+–[\d.]+\s+[\d.]+× \[[\d.]+, [\d.]+\]$"
    assert re.search(timing, text, re.MULTILINE)
    widths = re.findall(r"^(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+×$", text, re.MULTILINE)
    assert widths == ["192", "384", "768"]
    verdict = r"^\s*(?:holds|fails|within noise): "
    assert len(re.findall(verdict, text, re.MULTILINE)) == 7
    assert re.search(verdict + r"speed-up, our width-192 model", text, re.MULTILINE)
    assert has_figure(nb, "plot_accuracy_vs_keep(curves")
    # the paper's table stays beside our numbers
    assert any("ViT-Adapter-S, VPP" in c.source for c in nb.cells if c.cell_type == "markdown")
