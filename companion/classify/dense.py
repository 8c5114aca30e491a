"""The dense stage: backbone + cross-entropy + Feature Diversity Loss, trained once and cached.

The cache file is keyed by a fingerprint of (dataset identity, backbone name and options,
recipe), so every classification chapter loads the same model and a changed knob trains afresh.
Run from the command line (also under ``torchrun --nproc_per_node N``)::

    python -m companion.classify.dense --data concept_parts --backbone small_cnn
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..distributed import world
from ..io import CorruptFileError, load_checked, save_atomic
from ..losses import DIVERSITY_BETA, diversity_criterion
from ..models import Classifier, create_backbone
from ..runtime import cache_dir, get_profile, resolve_device, seed_everything, set_profile
from ..train import History, evaluate, fit
from .data import ClassificationData, load_data

__all__ = ["DenseModel", "DenseRecipe", "backbone_options", "dense_fingerprint", "dense_model",
           "prepare"]

FORMAT = "companion.classify.dense/1"


@dataclass(frozen=True)
class DenseRecipe:
    """How the dense model is trained (SGD, cosine schedule, CE + β·𝓛_div); ``batch_size`` per process."""

    epochs: int = 8
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    scheduler: str = "cosine"
    beta: float = DIVERSITY_BETA
    seed: int = 0

    @classmethod
    def for_profile(cls, **overrides: Any) -> DenseRecipe:
        """The active profile's recipe (smoke: 8 epochs, lr 0.05; full: 10, 5e-3), ``None`` kept out."""
        p = get_profile()
        base = dict(epochs=p.pick(8, 10), lr=p.pick(0.05, 5e-3), batch_size=p.pick(64, 32))
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def backbone_options(name: str, pretrained: bool = True) -> dict[str, Any]:
    """The profile's options of a backbone: ImageNet weights for timm, the width of the small CNN."""
    if name.startswith("timm:"):
        return {"pretrained": bool(pretrained)}
    return {"width": get_profile().pick(64, 128)}


def dense_fingerprint(data: ClassificationData, backbone: str, options: dict[str, Any],
                      recipe: DenseRecipe) -> str:
    """SHA-256 of (dataset identity, backbone name and options, recipe)."""
    key = {"data": data.name, "n_classes": data.n_classes, "backbone": backbone,
           "options": options, "recipe": dataclasses.asdict(recipe)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class DenseModel:
    """The dense classifier, its training history, where it is cached and whether it was trained now."""

    model: Classifier
    history: History
    path: Path
    fingerprint: str
    trained: bool
    test_accuracy: float | None = None  # set by :func:`prepare`

    def __str__(self) -> str:
        acc = "" if self.test_accuracy is None else f", test accuracy {self.test_accuracy:.1%}"
        return f"dense model: {self.model.num_features} features{acc}"


def _path(data: ClassificationData, backbone: str, fingerprint: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone.removeprefix("timm:"))
    return cache_dir("dense") / f"{data.name}_{safe}_{fingerprint[:16]}.pt"


def _load(path: Path, fingerprint: str) -> dict | None:
    """The cached state if it was written for exactly this fingerprint, else None."""
    if not path.exists():
        return None
    try:
        state = load_checked(path, what="cached dense model",
                             fix="It is trained again now and overwritten.")
    except CorruptFileError as err:
        warnings.warn(str(err), stacklevel=3)
        return None
    ok = isinstance(state, dict) and state.get("format") == FORMAT
    return state if ok and state.get("fingerprint") == fingerprint else None


def dense_model(data: ClassificationData, backbone: str = "small_cnn", *,
                options: dict[str, Any] | None = None, recipe: DenseRecipe | None = None,
                device: str | torch.device | None = None, progress: bool = True,
                retrain: bool = False) -> DenseModel:
    """The cached dense model of this data, backbone and recipe; trained (and cached) if absent."""
    options = backbone_options(backbone) if options is None else dict(options)
    recipe = DenseRecipe.for_profile() if recipe is None else recipe
    fingerprint = dense_fingerprint(data, backbone, options, recipe)
    path = _path(data, backbone, fingerprint)
    seed_everything(recipe.seed)
    model = Classifier(create_backbone(backbone, **options), data.n_classes)
    state = None if retrain else _load(path, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        model.to(resolve_device(device))
        return DenseModel(model, History.from_dict(state["history"]), path, fingerprint, False)
    history = fit(model, data.train, epochs=recipe.epochs, loss=diversity_criterion(recipe.beta),
                  lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                  batch_size=recipe.batch_size, scheduler=recipe.scheduler, seed=recipe.seed,
                  checkpoint=path.with_suffix(".train.pt"), resume=not retrain, device=device,
                  progress=progress, desc="dense")
    rank, world_size = world()
    if rank == 0:
        save_atomic({"format": FORMAT, "fingerprint": fingerprint, "model": model.state_dict(),
                     "history": history.to_dict()}, path)
    if world_size > 1:
        dist.barrier()
    return DenseModel(model, history, path, fingerprint, True)


def prepare(image_folder: str | Path | None = None, *, cub_root: str | Path | None = None,
            backbone: str | None = None, pretrained: bool = True, image_size: int = 224,
            epochs: int | None = None, progress: bool = True
            ) -> tuple[ClassificationData, DenseModel]:
    """The shared start of the classification chapters: the data and its cached dense model.

    The data is ``image_folder`` if given, else CUB-200-2011 in the full world with downloads
    and the concept parts otherwise; the backbone defaults to ``timm:resnet50`` on real images
    and the small CNN on synthetic ones. The dense model comes with its test accuracy.
    """
    source = image_folder or ("cub" if get_profile().real_data else "concept_parts")
    data = load_data(source, root=cub_root, image_size=image_size)
    name = backbone or ("timm:resnet50" if data.real_images else "small_cnn")
    dense = dense_model(data, name, options=backbone_options(name, pretrained),
                        recipe=DenseRecipe.for_profile(epochs=epochs), progress=progress)
    accuracy = evaluate(dense.model, data.test)["accuracy"]
    return data, dataclasses.replace(dense, test_accuracy=accuracy)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m companion.classify.dense",
                                description="Train and cache the dense model of the "
                                            "classification chapters (also under torchrun).")
    p.add_argument("--data", default="concept_parts", help="concept_parts, cub or an image folder")
    p.add_argument("--root", default=None, help="CUB's folder (default: the companion cache)")
    p.add_argument("--backbone", default=None, help="small_cnn or timm:<model> (default: the "
                   "chapters' choice: timm:resnet50 on real images, else small_cnn)")
    p.add_argument("--no-pretrained", action="store_true", help="timm: random initial weights")
    p.add_argument("--width", type=int, default=None, help="small_cnn: channels")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--profile", default=None, choices=("smoke", "full"))
    p.add_argument("--device", default=None)
    for name, kind in [("epochs", int), ("lr", float), ("batch-size", int), ("seed", int),
                       ("n-train", int), ("n-test", int), ("n-classes", int)]:
        p.add_argument(f"--{name}", type=kind, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> DenseModel:
    """Command-line entry: the same data, backbone and recipe as the chapters, unless overridden."""
    a = _arguments(argv)
    set_profile(a.profile, device=a.device)
    sizes = {k: v for k, v in dict(n_train=a.n_train, n_test=a.n_test,
                                   n_classes=a.n_classes).items() if v is not None}
    data = load_data(a.data, root=a.root, image_size=a.image_size, **sizes)
    backbone = a.backbone or ("small_cnn" if a.data == "concept_parts" else "timm:resnet50")
    options = backbone_options(backbone, pretrained=not a.no_pretrained)
    if a.width is not None:
        options["width"] = a.width
    recipe = DenseRecipe.for_profile(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size,
                                     seed=a.seed)
    out = dense_model(data, backbone, options=options, recipe=recipe)
    if world()[0] == 0:
        print(f"{'trained' if out.trained else 'found'} {out.path}")
    return out


if __name__ == "__main__":
    main()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
