"""UncertainSAM's full world rehearsed on CPU: COCO at its real instance statistics, SAM 2.1 as tiny
random models.

The chapter runs with profile "full" and real data on, unchanged: ``coco_root`` points at a COCO
val2017 written by ``write_real_shapes_coco`` (the chapter's 300 images, about 7 instances each,
small instances and crowds as in COCO) and ``HF_HOME`` at a Hugging Face cache in the Hub's layout
holding tiny random SAM 2 models under SAM 2.1's names, with ``HF_HUB_OFFLINE=1``: nothing is
downloaded. Random MLPs in the official repository's layout stand in for the official USAM heads.
The synthetic sections before it run at the smoke world's sizes (500 and 250 scenes):
the rehearsal is about the COCO path, and their full sizes (4,000 and 2,000 scenes) alone cost
about 230 CPU-seconds, logic the smoke world already runs at another size.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jupytext
import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "data"))
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "rehearsal"))
from coco_fixture import REAL_N_IMAGES, TINY_AREA, write_real_shapes_coco  # noqa: E402
from test_full_world import execute_full_world, text_of, with_parameters  # noqa: E402
from test_rehearsal import with_constants  # noqa: E402

pytestmark = pytest.mark.rehearsal

BOOK = TESTS.parent / "book"
CELL_TIMEOUT = 3600  # wall seconds per cell: a shared machine runs several times slower than its CPU
SYNTHETIC_SIZES = {"N_TRAIN": 500, "N_TEST": 250}  # the smoke world's scenes


@pytest.fixture(scope="module")
def real_coco(tmp_path_factory) -> Path:
    return write_real_shapes_coco(tmp_path_factory.mktemp("coco_real_shapes"))


def kept_instances(root: Path) -> tuple[int, int]:
    """(images, instances) the paper's rule keeps, counted from the JSON alone: no crowds, at least
    10 px², images with nothing left out."""
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    kept = [a for a in data["annotations"] if not a["iscrowd"] and a["area"] >= TINY_AREA]
    return len({a["image_id"] for a in kept}), len(kept)


def test_the_coco_fixture_has_cocos_real_shapes(real_coco):
    from companion.data.coco import coco_instances

    data = json.loads((real_coco / "annotations" / "instances_val2017.json").read_text())
    anns = data["annotations"]
    per_image = [sum(a["image_id"] == i["id"] for a in anns) for i in data["images"]]
    assert len(data["images"]) == REAL_N_IMAGES and len(data["categories"]) == 80
    assert 6.5 <= len(anns) / REAL_N_IMAGES <= 8.0 and max(per_image) >= 50
    areas = [a["area"] for a in anns]
    assert 0.3 <= sum(a < 32 ** 2 for a in areas) / len(areas) <= 0.5
    assert any(a < TINY_AREA for a in areas) and any(a["iscrowd"] for a in anns)
    assert all(isinstance(a["segmentation"], dict) == bool(a["iscrowd"]) for a in anns)  # RLE
    coco = coco_instances(real_coco, max_images=REAL_N_IMAGES, progress=False)
    # the paper's rule: crowds and instances under 10 px² are dropped, nothing else
    assert (len(coco.images), len(coco.masks)) == kept_instances(real_coco)
    assert min(int(m.sum()) for m in coco.masks) >= TINY_AREA
    assert all(m.shape == coco.images[i].shape[:2] for m, i in zip(coco.masks, coco.image_index,
                                                                   strict=True))


def test_usam_rehearsal(real_coco, tmp_path):
    # imported here: transformers takes 4 s to import, which every other rehearsal test would pay
    from sam2_fixture import write_official_mlps, write_tiny_sam2_hub

    hf_home = write_tiny_sam2_hub(tmp_path / "hf")
    hub_before = sorted(p.relative_to(hf_home) for p in hf_home.rglob("*"))
    nb = with_parameters(jupytext.read(BOOK / "usam.md"), profile="full", coco_root=str(real_coco))
    nb = with_constants(nb, "N_TRAIN = P.pick", **SYNTHETIC_SIZES)
    cache = tmp_path / "cache"
    cache.mkdir()
    # the official MLPs where the chapter looks for them (its working folder), random here
    write_official_mlps(cache / "usam_mlps" / "sam2.1")
    try:
        seconds = execute_full_world(nb, cache, timeout=CELL_TIMEOUT, HF_HOME=str(hf_home),
                                     OMP_NUM_THREADS="1")
    finally:
        (tmp_path / "usam.txt").write_text(text_of(nb))  # what it printed, to read on a failure
    print(f"usam: rehearsal in {seconds:.0f} s", file=sys.stderr)
    text = text_of(nb)
    assert "Profile(name='full'" in text and "real_data=True" in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    stderr = [out.text for cell in nb.cells for out in cell.get("outputs", [])
              if out.output_type == "stream" and out.name == "stderr"]
    assert not stderr, stderr  # no warnings, no progress bars
    n_images, n_instances = kept_instances(real_coco)
    assert f"{n_images} images, {n_instances} instances" in text
    assert re.search(r"^instances per image: \d\.\d \(at most (5\d|6[0-3])\)$", text, re.M)
    assert re.search(r"^small instances \(under 32² px\): [34]\d%$", text, re.M)
    for size in ("tiny", "large"):  # the two SAM 2.1 sizes, four mean IoUs each
        assert re.search(rf"^\s*{size}:\s+\d\.\d{{3}}\s+\d\.\d{{3}}\s+\d\.\d{{3}}$", text, re.M)
    n_fit, n_test = map(int, re.search(r"^(\d+) instances train the heads, (\d+) evaluate them$",
                                       text, re.M).groups())
    assert n_fit + n_test == n_instances and 0.1 < n_test / n_instances < 0.3
    # the panels beside the paper's numbers, each with USAM's lead over random and its interval
    number, interval = r"-?\d+\.\d", r"\[[+-]\d+\.\d, [+-]\d+\.\d\]"
    for panel, paper in (("model", "63.66"), ("prompt", "78.30"), ("task", "94.82")):
        assert re.search(rf"^{panel}\s+{paper}\s+{number}\s+{number}\s+{number}\s+{interval}\s*$",
                         text, re.M), panel
    assert "Kaiser et al. 2025, Table 6" in text
    # the three uses, each with a verdict
    for use in ("cascade", "refine", "filter"):
        assert re.search(rf"^{use}, acting on 30 %: \d\.\d{{3}} by USAM, \d\.\d{{3}} at random$",
                         text, re.M), use
        assert re.search(rf"^\s*(holds|fails|within noise): SAM 2\.1 {use}: ", text, re.M), use
    # the official MLPs, fed the official pairing: one more table of the four panels' methods
    official = text.split("SAM 2.1 filter: ")[1].split("Explorer(")[0]
    assert "no official USAM MLPs" not in text and official.count("relative AUC (%)") == 1
    assert re.search(r"^method\s+model\s+prompt\s+task\s+segmentation\s*$", official, re.M)
    # nothing was downloaded: no COCO in the cache, the Hub cache holds only what was written
    assert not (cache / "coco").exists()
    assert sorted(p.relative_to(hf_home) for p in hf_home.rglob("*")) == hub_before
