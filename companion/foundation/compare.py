"""Smoke backbones side by side on the DINO-QPM chapter's data: probes, accuracy and Plausibility.

The chapter's backbone check, run once for several frozen ViTs (random weights, the labelled
checkpoint, a label-free one) on the same data with the same seeds, and the chapter's method on
each: the dense adapter, QPM's assignment and the sparsity fine-tuning. The measured numbers are
committed as ``checkpoints/label_free.json``, written with::

    OMP_NUM_THREADS=1 python -m companion.foundation.pretrain --objective masked --out masked.pt
    OMP_NUM_THREADS=1 python -m companion.foundation.compare masked.pt

(more label-free checkpoints, e.g. one pretrained with ``--rotation 45``, add more rows). The
chapter prints them; recomputing them there would cost the chapter's budget twice over.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..classify import dino_qpm as dq
from ..classify.data import load_data
from ..features import extract_features
from ..metrics.plausibility import plausibility
from ..runtime import set_profile
from . import pretrain
from .probes import probe_scores

RESULTS = Path(__file__).resolve().parent / "checkpoints" / "label_free.json"
N_FEATURES, PER_CLASS = 16, 4  # the chapter's smoke world


def dino_qpm_scores(train: dq.Tokens, test: dq.Tokens, n_classes: int, masks: torch.Tensor,
                    seed: int = 0) -> tuple[dict[str, float], torch.Tensor]:
    """DINO-QPM on frozen tokens (the chapter's smoke recipe): accuracy, Plausibility, hits.

    The hits (N,) say which test images DINO-QPM classified correctly.
    """
    recipe = dq.DinoQPMRecipe.for_profile()
    torch.manual_seed(seed)
    dense, _ = dq.train_dense_adapter(train, n_classes, recipe, progress=False)
    qpm = dq.assign(extract_features(dense, train.dataset(), progress=False),
                    n_features=N_FEATURES, per_class=PER_CLASS, time_limit=60, progress=False)
    model, _ = dq.fine_tune_adapter(dense, qpm.layer_, train, recipe, progress=False)
    fs = extract_features(model, test.dataset(), maps=True, progress=False)
    with torch.no_grad():
        predicted = model.head(fs.pooled).argmax(1)
    plaus = plausibility(model.head.select_maps(fs.maps), model.head.weight, predicted, masks)
    hits = predicted == test.labels
    return {"DINO-QPM accuracy": float(hits.float().mean()),
            "DINO-QPM Plausibility": float(plaus.mean)}, hits


def compare(backbones: dict[str, dq.FrozenViT], seed: int = 0
            ) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Probes of pooled and CLS tokens and DINO-QPM's scores for each backbone (smoke data).

    Returns the scores and, per backbone, DINO-QPM's hits on the test images as a string of
    0s and 1s (for paired intervals between backbones).
    """
    data = load_data("concept_parts")
    masks = dq.concept_object_masks(data.synthetic_test)
    rows, hits = {}, {}
    for name, vit in backbones.items():
        train = dq.frozen_tokens(vit, data.eval_train, progress=False)
        test = dq.frozen_tokens(vit, data.test, progress=False)
        pooled = probe_scores(train.pooled, train.labels, test.pooled, test.labels, seed=seed)
        cls = probe_scores(train.cls, train.labels, test.cls, test.labels, seed=seed)
        scores, correct = dino_qpm_scores(train, test, data.n_classes, masks, seed)
        rows[name] = {**{f"pooled {k}": v for k, v in pooled.items()},
                      "CLS linear": cls["linear"], **scores}
        hits[name] = "".join("1" if c else "0" for c in correct.tolist())
    return rows, hits


def read_results(path: str | os.PathLike = RESULTS) -> dict[str, Any]:
    """The committed comparison: ``backbones`` (name: scores), ``hits`` (name: DINO-QPM's hits
    as 0s and 1s) and ``label_free`` (name: its pretraining run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No comparison at {path}; write it with "
                                "`python -m companion.foundation.compare CHECKPOINT`.")
    return json.loads(path.read_text())


def label_free_name(config: pretrain.PretrainConfig) -> str:
    """The row name of a label-free backbone: its objective and its data."""
    return f"masked, turned {config.rotation:g}°" if config.rotation else "masked patches"


def main(argv: list[str] | None = None) -> None:
    """Command line: compare random weights, the shipped checkpoint and label-free ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label_free", type=Path, nargs="+",
                        help="checkpoints written with --objective masked")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    set_profile("smoke")
    torch.manual_seed(1)  # the chapter's random ViT
    backbones = {"random weights": pretrain.build_vit(), "labels (shipped)": pretrain.load().vit}
    attempts = {}
    for path in args.label_free:
        done = pretrain.load(path)
        name = label_free_name(done.config)
        backbones[name] = done.vit
        attempts[name] = {"config": asdict(done.config), "seconds": done.seconds,
                          "last_masked_mse": done.history.train_metrics["masked_mse"][-1]}
    start = time.process_time()
    rows, hits = compare(backbones)
    args.out.write_text(json.dumps({"backbones": rows, "hits": hits, "label_free": attempts},
                                   indent=1) + "\n")
    for name, row in rows.items():
        print(name, {k: round(v, 3) for k, v in row.items()})
    print(f"wrote {args.out} after {time.process_time() - start:.0f} CPU-seconds")


if __name__ == "__main__":
    main()
