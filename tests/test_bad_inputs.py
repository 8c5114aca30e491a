"""Every bad input a clear error: one table of call -> exception type and a fragment of its message.

Each case builds what it needs in ``tmp_path`` (tiny fixtures in the real on-disk formats) and
returns the call that must fail; the fragment names the problem, and ``FIX`` the way out.
"""

from __future__ import annotations

import errno
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "data"))
from cub_fixture import write_tiny_cub  # noqa: E402
from davis_fixture import write_tiny_davis  # noqa: E402

import companion.download as download_module  # noqa: E402
import companion.io as io_module  # noqa: E402
import companion.train as train_module  # noqa: E402
from companion.classify.base import NotFittedError  # noqa: E402
from companion.classify.chiqpm import CHiQPM, forced_pairs  # noqa: E402
from companion.classify.data import load_data  # noqa: E402
from companion.classify.dino_qpm import frozen_vit  # noqa: E402
from companion.classify.qsenn import QSENN, quantise_ternary  # noqa: E402
from companion.data.ambiguous_shapes import make_ambiguous_shapes  # noqa: E402
from companion.data.concept_parts import make_concept_parts  # noqa: E402
from companion.data.cub import CUB200  # noqa: E402
from companion.data.davis import DAVIS2017, to_clips  # noqa: E402
from companion.data.mask_folder import mask_folder_instances  # noqa: E402
from companion.data.moving_shapes import make_moving_shapes  # noqa: E402
from companion.download import DownloadError, download  # noqa: E402
from companion.features import extract_features  # noqa: E402
from companion.foundation.pretrain import PretrainConfig  # noqa: E402
from companion.io import CorruptFileError, load_checked, save_atomic  # noqa: E402
from companion.losses import diversity_criterion  # noqa: E402
from companion.metrics.bootstrap import bootstrap_interval  # noqa: E402
from companion.metrics.conformal import (  # noqa: E402
    HierarchicalConformal,
    baseline_sets,
    conformal_quantile,
)
from companion.metrics.efficiency import Timing, speedup_interval  # noqa: E402
from companion.metrics.plausibility import plausibility  # noqa: E402
from companion.metrics.segmentation import mask_ap  # noqa: E402
from companion.models import Classifier, SmallCNN, create_backbone  # noqa: E402
from companion.runtime import (
    cache_dir,  # noqa: E402
    set_profile,  # noqa: E402
)
from companion.solvers.elastic_net import elastic_net_path  # noqa: E402
from companion.solvers.qpm import assignment_objective, solve_assignment  # noqa: E402
from companion.tables import Table  # noqa: E402
from companion.train import evaluate, fit  # noqa: E402
from companion.usam.records import predict_instances  # noqa: E402
from companion.usam.sam2_hf import predict_sam2  # noqa: E402
from companion.usam.segmenter import create_segmenter  # noqa: E402
from companion.usam.uses import cascade  # noqa: E402
from companion.viz.concept_parts import show_concept_parts  # noqa: E402
from companion.vpp.evaluation import ClipRuns, evaluate_clips, run_clips, selectivity  # noqa: E402
from companion.vpp.pruning import PrunedSegmenter  # noqa: E402
from companion.vpp.schedule import KeepRatioSchedule  # noqa: E402
from companion.vpp.segmenter import VideoSegmenter, VideoSegmenterConfig  # noqa: E402

DAVIS_FIX = "download=True"


# ---------------------------------------------------------------- item 5: cache folder, disk

def cache_is_a_file(tmp, mp):
    (tmp / "a_file").write_text("")
    mp.setenv("COMPANION_CACHE", str(tmp / "a_file"))
    return lambda: cache_dir("features")


def cache_below_a_file(tmp, mp):
    (tmp / "a_file").write_text("")
    mp.setenv("COMPANION_CACHE", str(tmp / "a_file" / "cache"))
    return lambda: cache_dir("downloads")


def cache_parent_read_only(tmp, mp):  # tests run as root, where chmod does not stop writes
    mp.setenv("COMPANION_CACHE", str(tmp / "missing"))

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))
    mp.setattr(Path, "mkdir", refuse)
    return lambda: cache_dir("features")


def _failing(mp, owner, name, error):
    def fail(*args, **kwargs):
        raise error
    mp.setattr(owner, name, fail)


def disk_full_in_torch_save(tmp, mp):
    _failing(mp, io_module.torch, "save", OSError(errno.ENOSPC, "No space left on device"))
    return lambda: save_atomic({"w": torch.zeros(3)}, tmp / "cache" / "m.pt")


def disk_full_in_torch_zip_writer(tmp, mp):
    _failing(mp, io_module.torch, "save", RuntimeError(
        "[enforce fail at inline_container.cc:672] . unexpected pos 448 vs 342"))
    return lambda: save_atomic({"w": torch.zeros(3)}, tmp / "cache" / "m.pt")


def read_only_folder_in_save(tmp, mp):
    _failing(mp, io_module.os, "replace", OSError(errno.EROFS, "Read-only file system"))
    return lambda: save_atomic({"w": torch.zeros(3)}, tmp / "m.pt")


def save_below_a_file(tmp, mp):
    (tmp / "a_file").write_text("")
    return lambda: save_atomic({"w": torch.zeros(3)}, tmp / "a_file" / "m.pt")


def read_only_download_folder(tmp, mp):
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    mp.setattr(download_module.os, "open", refuse)
    (tmp / "source.bin").write_bytes(b"x")
    return lambda: download((tmp / "source.bin").as_uri(), None, folder=tmp / "out",
                            progress=False)


def disk_full_while_downloading(tmp, mp):
    real_open = open

    def full(path, *args, **kwargs):
        if str(path).endswith(".part"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, *args, **kwargs)
    mp.setattr(download_module, "open", full, raising=False)
    (tmp / "source.bin").write_bytes(b"x")
    return lambda: download((tmp / "source.bin").as_uri(), None, folder=tmp / "out",
                            progress=False)


def download_folder_is_a_file(tmp, mp):
    (tmp / "out").write_text("")
    (tmp / "source.bin").write_bytes(b"x")
    return lambda: download((tmp / "source.bin").as_uri(), None, folder=tmp / "out" / "sub",
                            progress=False)


# ------------------------------------------------------------------- item 2: bad files

def _saved(tmp):
    path = tmp / "m.pt"
    save_atomic({"w": torch.randn(512)}, path)
    return path


def truncated_file(tmp, mp):
    path = _saved(tmp)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return lambda: load_checked(path, what="checkpoint")


def flipped_file(tmp, mp):
    path = _saved(tmp)
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = bytes(16)
    path.write_bytes(bytes(data))
    return lambda: load_checked(path, what="checkpoint")


def foreign_file(tmp, mp):
    (tmp / "m.pt").write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    return lambda: load_checked(tmp / "m.pt", what="checkpoint")


def unchecked_torch_file(tmp, mp):
    torch.save({"w": torch.randn(4)}, tmp / "m.pt")
    return lambda: load_checked(tmp / "m.pt", what="checkpoint")


def empty_file(tmp, mp):
    (tmp / "m.pt").write_bytes(b"")
    return lambda: load_checked(tmp / "m.pt", what="checkpoint")


def checked_but_not_a_checkpoint_of_fit(tmp, mp):
    save_atomic([1, 2, 3], tmp / "m.pt")
    return lambda: fit(torch.nn.Linear(2, 2), (torch.randn(4, 2), torch.arange(4) % 2),
                       epochs=1, lr=0.1, checkpoint=tmp / "m.pt", progress=False, device="cpu")


def truncated_checkpoint_in_fit(tmp, mp):
    path = truncated_file(tmp, mp) and tmp / "m.pt"
    return lambda: fit(torch.nn.Linear(2, 2), (torch.randn(4, 2), torch.arange(4) % 2),
                       epochs=1, lr=0.1, checkpoint=path, progress=False, device="cpu")


# ------------------------------------------------------------------------ item 7: DAVIS, CUB

def _davis(tmp, **kwargs):
    return write_tiny_davis(tmp, **kwargs)


def davis_frame_of_another_size(tmp, mp):
    base = _davis(tmp)
    Image.new("RGB", (20, 10)).save(base / "JPEGImages" / "480p" / "bear" / "00001.jpg")
    return lambda: DAVIS2017(tmp)[0]


def davis_annotation_of_another_size(tmp, mp):
    base = _davis(tmp)
    Image.new("P", (8, 8)).save(base / "Annotations" / "480p" / "car" / "00002.png")
    return lambda: DAVIS2017(tmp)[1]


def davis_truncated_jpeg(tmp, mp):
    path = _davis(tmp) / "JPEGImages" / "480p" / "bear" / "00001.jpg"
    path.write_bytes(path.read_bytes()[:300])
    return lambda: DAVIS2017(tmp)[0]


def davis_truncated_png(tmp, mp):
    path = _davis(tmp) / "Annotations" / "480p" / "bear" / "00002.png"
    path.write_bytes(path.read_bytes()[:40])
    return lambda: DAVIS2017(tmp)[0]


def davis_empty_split_file(tmp, mp):
    (_davis(tmp) / "ImageSets" / "2017" / "val.txt").write_text("")
    return lambda: DAVIS2017(tmp)


def davis_truncated_split_file(tmp, mp):
    (_davis(tmp) / "ImageSets" / "2017" / "val.txt").write_text("bear\nca")
    return lambda: DAVIS2017(tmp)


def davis_with(**kwargs):
    def case(tmp, mp):
        _davis(tmp)
        return lambda: DAVIS2017(tmp, **kwargs)
    return case


def davis_clips(**kwargs):
    def case(tmp, mp):
        _davis(tmp)
        return lambda: to_clips(DAVIS2017(tmp, image_size=8), **kwargs)
    return case


def cub_mask_of_another_size(tmp, mp):
    tiny = write_tiny_cub(tmp / "cub")
    data = CUB200(tiny.root, segmentations=True)
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(data._mask_path(2))
    return lambda: data[2]


def cub_mask_of_another_size_in_annotations(tmp, mp):
    tiny = write_tiny_cub(tmp / "cub")
    data = CUB200(tiny.root, segmentations=True, crop_to_bbox=True)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(data._mask_path(0))
    return lambda: data.annotations(0)


def cub_segmentation_without_segmentations(tmp, mp):
    data = CUB200(write_tiny_cub(tmp / "cub").root)
    return lambda: data.segmentation(0)


def cub_keep_decoded_with_crops(tmp, mp):
    data = CUB200(write_tiny_cub(tmp / "cub").root, crop_to_bbox=True)
    return lambda: data.keep_decoded(20)


def cub_image_cache_limit(value):
    def case(tmp, mp):
        mp.setenv("COMPANION_IMAGE_CACHE_MB", value)
        mp.setenv("COMPANION_CACHE", str(tmp / "cache"))
        data = CUB200(write_tiny_cub(tmp / "cub").root)
        return lambda: data.keep_decoded(20)
    return case


# ------------------------------------------------------------------- item 8: generators

def call(function, **kwargs):
    return lambda tmp, mp: lambda: function(**kwargs)


def moving(**kwargs):
    return call(make_moving_shapes, **{"n_videos": 1, "n_frames": 2, "image_size": 16, **kwargs})


def ambiguous(**kwargs):
    return call(make_ambiguous_shapes, **{"n_images": 2, "progress": False, **kwargs})


# ----------------------------------------------------------------------- item 6: labels

def _labelled(dtype=torch.long, bad=None):
    """Eight 2-D points with labels 0..2 of ``dtype``, the label of sample 3 set to ``bad``."""
    y = torch.arange(8) % 3
    if bad is not None:
        y[3] = bad
    return torch.randn(8, 2), y.to(dtype)


def labels_in_fit(dtype=torch.long, bad=None):
    return lambda tmp, mp: lambda: fit(torch.nn.Linear(2, 3), _labelled(dtype, bad), epochs=1,
                                       lr=0.1, batch_size=8, progress=False, device="cpu")


def labels_in_diversity_loss(tmp, mp):
    model = Classifier(create_backbone("small_cnn", width=8), 3)
    batch = (torch.rand(2, 3, 16, 16), torch.tensor([0, 5]))
    return lambda: diversity_criterion()(model, batch)


def labels_in_evaluate(dtype=torch.long, bad=None):
    return lambda tmp, mp: lambda: evaluate(torch.nn.Linear(2, 3), _labelled(dtype, bad),
                                            device="cpu")


# ------------------------------------------------------------------ item 9: models, solvers

VPP_CONFIG = VideoSegmenterConfig(image_size=16, patch_size=8, dim=16, depth=2, heads=2,
                                  num_queries=2, decoder_layers=1, pixel_dim=8)
UINT8_FRAMES = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)


def vpp_uint8_frames(tmp, mp):
    return lambda: VideoSegmenter(VPP_CONFIG)(UINT8_FRAMES)


def vpp_pruned_uint8_clip(tmp, mp):
    schedule = KeepRatioSchedule(depth=2, map_block=None, sm_blocks=(1,), sm_ratios=(0.5,))
    return lambda: PrunedSegmenter(VideoSegmenter(VPP_CONFIG), schedule).predict_clip(UINT8_FRAMES)


def usam_uint8_images(tmp, mp):
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    return lambda: create_segmenter("tiny", device="cpu")(images, torch.tensor([[[5.0, 5.0]]]))


def usam_clicks(points):
    return lambda tmp, mp: lambda: create_segmenter("tiny", device="cpu")(
        torch.rand(1, 3, 32, 32), points)


def usam_masks_of_another_size(tmp, mp):
    data = make_ambiguous_shapes(2, seed=0, progress=False)
    bad = type(data)(data.images, data.masks[:, :16, :16], data.image_index, data.kind, data.group)
    return lambda: predict_instances(create_segmenter("tiny", device="cpu"), bad,
                                     torch.zeros(len(bad), 1, 2), progress=False)


def usam_sam2_instance(mask_shape=(8, 10), points=((1.0, 1.0),)):
    image, mask = np.zeros((8, 10, 3), np.uint8), np.ones(mask_shape, bool)
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    return call(predict_sam2, segmenter=None, images=[image], masks=[mask], points=[pts],
                progress=False)


def mask_folder(image_size=(8, 10), mask_size=(8, 10), mask=True, value=1):
    """A reader's folder of one image (and its mask, unless ``mask`` is False)."""
    def make(tmp, mp):
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        Image.fromarray(np.zeros((*image_size, 3), np.uint8)).save(tmp / "images" / "a.png")
        if mask:
            Image.fromarray(np.full(mask_size, value, np.uint8)).save(tmp / "masks" / "a.png")
        return lambda: mask_folder_instances(tmp)
    return make

def small_cnn_too_small(tmp, mp):
    return lambda: Classifier(SmallCNN(width=8), num_classes=2)(torch.rand(2, 3, 4, 12))


def _features(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.arange(n) % 2


def elastic_val(make_val):
    return lambda tmp, mp: lambda: elastic_net_path(*_features(20, 5), n_lambdas=2, progress=False,
                                                     device="cpu", val=make_val())


def nan_pixels_into_features(tmp, mp):
    x = torch.rand(5, 3, 16, 16)
    x[2, 0, 3, 3] = math.nan
    return lambda: extract_features(SmallCNN(width=8), (x,), device="cpu", progress=False)


def qpm(**kwargs):
    return call(solve_assignment, **{"similarity": np.eye(3, 4), "n_features": 3, "per_class": 1,
                                     "solver": "heuristic", "progress": False, **kwargs})


def qsenn_fit(n_features, per_class, constant=False, constant_selected=False):
    """QSENN on 4 informative features of 12; with ``constant`` all but 3 columns constant; with
    ``constant_selected`` a refit on features whose selected columns are all constant."""
    def make(tmp, mp):
        from companion.classify import QSENN

        g = torch.Generator().manual_seed(0)
        y = torch.arange(200) % 4
        x = torch.rand(200, 12, generator=g)
        for j, col in enumerate((2, 5, 7, 9)):
            x[:, col] += 1.0 * (y == j).float() - 0.5 * (y == (j + 1) % 4).float()
        if constant:
            x[:, 3:] = 1.0
        if not constant_selected:
            return lambda: QSENN(n_features, per_class, n_lambdas=5, progress=False).fit(x, y)
        first = QSENN(n_features, per_class, n_lambdas=5, progress=False).fit(x, y)
        x[:, first.selected_] = 0.5
        return lambda: QSENN(n_features, per_class, n_lambdas=5, progress=False).fit(
            x, y, selection=first.selection_)
    return make


def qsenn_iterate_without_refit(fitted):
    """QSENN.iterate(refit_first=False) on a model of 8 features: unfitted, or fitted on 12."""
    def make(tmp, mp):
        from companion.classify import QSENN

        q = QSENN(2, 1, n_lambdas=5, progress=False)
        if fitted:
            y = torch.arange(40) % 4
            q.fit(torch.rand(40, 12, generator=torch.Generator().manual_seed(0)) + y[:, None], y)
        model = Classifier(SmallCNN(width=8), 4)
        return lambda: q.iterate(model, None, ((1, 1e-3),), refit_first=False)
    return make


LOWER_R = np.tril(np.full((4, 4), 0.5), -1)


def amp_nan_data_in_fit(tmp, mp):
    mp.setattr(train_module, "use_amp", lambda device, amp=None: True)  # fake a CUDA AMP run
    x = torch.full((12, 2), math.nan)
    return lambda: fit(torch.nn.Linear(2, 3), (x, torch.arange(12) % 3), epochs=1, lr=0.1,
                       batch_size=2, progress=False, device="cpu")



def chiqpm_infeasible(tmp, mp):
    # four near-identical classes force a K4 of pairs sharing one of two features: infeasible
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(6), 40)
    X = rng.random((240, 4))
    X[y == 4, 0] += 3
    X[y == 5, 1] += 3
    return lambda: CHiQPM(4, 2, rho=1.0, progress=False, time_limit=30).fit(X, y)


CP_W = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
CP_F = np.random.default_rng(0).random((30, 3))


def calibrated(n=30, labels=None):
    y = np.arange(n) % 3 if labels is None else labels
    return HierarchicalConformal(CP_W).calibrate(CP_F[:n], y)


CP_P = np.full((30, 3), 1 / 3)

CASES = [
    # item 5
    ("cache is a file", cache_is_a_file, NotADirectoryError,
     r"cache folder .*a_file is a file, not a folder.*COMPANION_CACHE="),
    ("cache below a file", cache_below_a_file, NotADirectoryError,
     r"a_file is a file.*set COMPANION_CACHE to a folder you can write"),
    ("cache parent read-only", cache_parent_read_only, PermissionError,
     r"Cannot create the cache folder .*missing.*Permission denied.*COMPANION_CACHE"),
    ("disk full in torch.save", disk_full_in_torch_save, OSError,
     r"Could not write .*m\.pt \(No space left on device\).*COMPANION_CACHE"),
    ("disk full in torch's zip writer", disk_full_in_torch_zip_writer, OSError,
     r"Could not write .*m\.pt .*unexpected pos.*Free space"),
    ("read-only folder in save_atomic", read_only_folder_in_save, OSError,
     r"Could not write .*m\.pt \(Read-only file system\).*writable"),
    ("save below a file", save_below_a_file, OSError,
     r"Could not write .*a_file/m\.pt \(.*a_file is a file, not a folder\)"),
    ("read-only download folder", read_only_download_folder, DownloadError,
     r"Cannot write into the download folder .*out \(Permission denied\).*COMPANION_CACHE"),
    ("disk full while downloading", disk_full_while_downloading, DownloadError,
     r"download folder .*out \(No space left on device\).*partial file is kept"),
    ("download folder below a file", download_folder_is_a_file, DownloadError,
     r"Cannot write into the download folder .*out/sub \(Not a directory\)"),
    # item 2 (bad files)
    ("truncated checkpoint", truncated_file, CorruptFileError,
     r"checkpoint .*m\.pt is truncated or damaged.*Delete it"),
    ("16 bytes zeroed", flipped_file, CorruptFileError,
     r"checkpoint .*m\.pt is damaged: its contents have SHA-256 .*Delete it"),
    ("foreign file", foreign_file, CorruptFileError, r"m\.pt is not a file written by companion"),
    ("empty file", empty_file, CorruptFileError, r"m\.pt is not a file written by companion"),
    ("plain torch.save, no checksum", unchecked_torch_file, CorruptFileError,
     r"m\.pt has no checksum.*cannot be trusted.*Delete it"),
    ("checked file that is no checkpoint", checked_but_not_a_checkpoint_of_fit, ValueError,
     r"m\.pt is not a checkpoint of format .companion\.train/1.*resume=False"),
    ("truncated checkpoint in fit", truncated_checkpoint_in_fit, CorruptFileError,
     r"checkpoint .*m\.pt is truncated.*pass resume=False"),
    # item 7
    ("DAVIS frame of another size", davis_frame_of_another_size, RuntimeError,
     r"bear: frame 00001\.jpg is 20x10 pixels but 00000\.jpg is 20x12.*" + DAVIS_FIX),
    ("DAVIS annotation of another size", davis_annotation_of_another_size, RuntimeError,
     r"car: the annotation 00002\.png is 8x8 pixels but its frame is 20x12.*" + DAVIS_FIX),
    ("DAVIS truncated JPEG", davis_truncated_jpeg, RuntimeError,
     r"Cannot read .*bear/00001\.jpg .*damaged.*" + DAVIS_FIX),
    ("DAVIS truncated PNG", davis_truncated_png, RuntimeError,
     r"Cannot read .*bear/00002\.png .*" + DAVIS_FIX),
    ("DAVIS empty val.txt", davis_empty_split_file, RuntimeError,
     r"val\.txt lists no sequences.*" + DAVIS_FIX),
    ("DAVIS truncated val.txt", davis_truncated_split_file, RuntimeError,
     r"val\.txt lists the sequence 'ca', which has no frames.*truncated.*" + DAVIS_FIX),
    ("DAVIS max_frames=0", davis_with(max_frames=0), ValueError, r"max_frames must be >= 1, got 0"),
    ("DAVIS image_size=0", davis_with(image_size=0), ValueError, r"image_size must be >= 1, got 0"),
    ("DAVIS image_size=2.5", davis_with(image_size=2.5), TypeError,
     r"image_size must be an integer, got float"),
    ("DAVIS max_objects=0", davis_with(max_objects=0), ValueError, r"max_objects must be >= 1"),
    ("DAVIS split", davis_with(split="test"), ValueError, r"Unknown split 'test'.*'train', 'val'"),
    ("to_clips n_frames=0", davis_clips(n_frames=0), ValueError, r"n_frames must be >= 1, got 0"),
    ("to_clips max_clips=0", davis_clips(n_frames=1, max_clips=0), ValueError,
     r"max_clips must be >= 1"),
    ("to_clips too long", davis_clips(n_frames=9), ValueError, r"No sequence has 9 frames"),
    ("CUB mask of another size", cub_mask_of_another_size, RuntimeError,
     r"segmentation .*\.png is 7x5 pixels but its image .*\.jpg is 32x24.*download=True"),
    ("CUB mask of another size, annotations", cub_mask_of_another_size_in_annotations,
     RuntimeError, r"is 64x48 pixels but its image .* is 32x24"),
    ("CUB segmentation without segmentations", cub_segmentation_without_segmentations,
     ValueError, r"made without segmentations: pass segmentations=True"),
    ("CUB keep_decoded with crops", cub_keep_decoded_with_crops, ValueError,
     r"keep_decoded keeps whole images without masks; .* crop_to_bbox=True"),
    ("CUB image cache limit 'lots'", cub_image_cache_limit("lots"), ValueError,
     r"COMPANION_IMAGE_CACHE_MB='lots' must be a number of megabytes ≥ 0"),
    ("CUB image cache limit -1", cub_image_cache_limit("-1"), ValueError,
     r"COMPANION_IMAGE_CACHE_MB='-1' must be a number of megabytes ≥ 0 \(0 turns"),
    # item 8
    ("moving n_frames=2.5", moving(n_frames=2.5), TypeError, r"n_frames must be an integer"),
    ("moving n_videos=0", moving(n_videos=0), ValueError, r"n_videos must be >= 1"),
    ("moving image_size=8", moving(image_size=8), ValueError, r"image_size must be >= 16"),
    ("moving objects=(1,)", moving(objects=(1,)), TypeError, r"objects must be a pair"),
    ("moving objects=(-1, 2)", moving(objects=(-1, 2)), ValueError, r"objects\[0\] must be >= 0"),
    ("moving objects=(1.5, 2)", moving(objects=(1.5, 2)), TypeError,
     r"objects\[0\] must be an integer"),
    ("moving seed=-1", moving(seed=-1), ValueError, r"seed must be >= 0"),
    ("moving n_classes=0", moving(n_classes=0), ValueError, r"n_classes must be >= 1"),
    ("moving max_objects=True", moving(max_objects=True), TypeError,
     r"max_objects must be an integer"),
    ("ambiguous max_groups=0", ambiguous(max_groups=0), ValueError,
     r"max_groups must be >= 1, got 0"),
    ("ambiguous noise=nan", ambiguous(noise=math.nan), ValueError,
     r"noise must be a finite number"),
    ("ambiguous noise=inf", ambiguous(noise=math.inf), ValueError,
     r"noise must be a finite number"),
    ("ambiguous noise=-0.1", ambiguous(noise=-0.1), ValueError, r"noise must lie in \[0, inf\]"),
    ("ambiguous noise='0.1'", ambiguous(noise="0.1"), TypeError, r"noise must be a number"),
    ("ambiguous n_images=2.0", ambiguous(n_images=2.0), TypeError, r"n_images must be an integer"),
    ("ambiguous image_size=16", ambiguous(image_size=16), ValueError, r"image_size must be >= 24"),
    ("ambiguous group_probs nan", ambiguous(group_probs=(math.nan, 1.0, 1.0)), ValueError,
     r"group_probs must be three or four finite non-negative weights"),
    ("ambiguous group_probs text", ambiguous(group_probs=("a", 1, 1)), TypeError,
     r"group_probs must be three or four numbers"),
    ("ambiguous group_probs five", ambiguous(group_probs=(1, 1, 1, 1, 1)), ValueError,
     r"group_probs must be three or four finite non-negative weights .* got \(1, 1, 1, 1, 1\)"),
    ("ambiguous seed=-3", ambiguous(seed=-3), ValueError, r"seed must be >= 0"),
    # item 6
    ("fit label out of range", labels_in_fit(bad=7), ValueError,
     r"label 7 is out of range for a model with 3 outputs.*num_classes >= 8"),
    ("fit negative label", labels_in_fit(bad=-1), ValueError,
     r"label -1 is negative.*\[0, 3\).*Drop unlabelled samples"),
    ("fit float labels", labels_in_fit(dtype=torch.float32), TypeError,
     r"labels y must be integer class indices, got dtype torch\.float32.*y\.long\(\)"),
    ("fit bool labels", labels_in_fit(dtype=torch.bool), TypeError,
     r"integer class indices, got dtype torch\.bool"),
    ("fit int32 label out of range", labels_in_fit(dtype=torch.int32, bad=3), ValueError,
     r"label 3 is out of range.*remap the labels to 0\.\.2"),
    ("diversity loss label out of range", labels_in_diversity_loss, ValueError,
     r"label 5 is out of range for a model with 3 outputs"),
    ("evaluate label out of range", labels_in_evaluate(bad=7), ValueError,
     r"evaluate: label 7 is out of range for a model with 3 outputs"),
    ("evaluate negative label", labels_in_evaluate(bad=-100), ValueError,
     r"evaluate: label -100 is negative"),
    ("evaluate float labels", labels_in_evaluate(dtype=torch.float64), TypeError,
     r"evaluate: labels y must be integer class indices, got dtype torch\.float64"),
    # item 9
    ("VPP uint8 frames", vpp_uint8_frames, TypeError,
     r"Expected float frames in \[0, 1\], got dtype torch\.uint8.*frames\.float\(\) / 255"),
    ("VPP pruned, uint8 clip", vpp_pruned_uint8_clip, TypeError,
     r"float frames .*torch\.uint8.*/ 255"),
    ("USAM uint8 images", usam_uint8_images, TypeError,
     r"images must be float tensors in \[0, 1\], got dtype torch\.uint8.*\.float\(\) / 255"),
    ("SmallCNN image 4x12", small_cnn_too_small, ValueError,
     r"SmallCNN needs images of at least 8x8 pixels .*got 4x12; resize or pad"),
    ("elastic-net val of another width", elastic_val(lambda: _features(10, 4, seed=1)), ValueError,
     r"val features have 4 columns but the training features have 5.*same features"),
    ("elastic-net val not a pair", elastic_val(lambda: _features(10, 5)[0]), TypeError,
     r"val must be a pair \(features, labels\).*got Tensor"),
    ("NaN pixels into extract_features", nan_pixels_into_features, ValueError,
     r"features of 1 of 5 samples are NaN or infinite \(first: samples \[2\]\).*NaN/inf pixels"),
    ("solve_assignment mip_gap=-0.5", qpm(mip_gap=-0.5), ValueError,
     r"mip_gap must be a finite relative gap ≥ 0.*got -0\.5"),
    ("solve_assignment mip_gap=nan", qpm(mip_gap=math.nan), ValueError,
     r"mip_gap must be a finite relative gap ≥ 0.*got nan"),
    ("set_profile device='tpu'", call(set_profile, name="smoke", device="tpu"), ValueError,
     r"Unknown device 'tpu': pass device='cpu', 'cuda' or 'cuda:N'"),
    ("solve_assignment R lower-triangular", qpm(similarity=np.eye(3, 4), redundancy=LOWER_R),
     ValueError, r"redundancy \(R\) has entries below the diagonal \(first: R\[1, 0\] = 0\.5\) "
     r"but is not symmetric; only a symmetric or an upper-triangular R is accepted.*R\.T"),
    ("assignment_objective R lower-triangular",
     call(assignment_objective, assignment=np.eye(3, 4), selected=[0, 1, 2],
          similarity=np.eye(3, 4), redundancy=LOWER_R), ValueError,
     r"entries below the diagonal.*upper-triangular"),
    ("NaN data in fit under AMP", amp_nan_data_in_fit, FloatingPointError,
     r"non-finite \(nan\) for 5 consecutive steps in epoch 1 under mixed precision.*amp=False"),
    ("bootstrap over one group", call(bootstrap_interval, statistic=len, groups=[3, 3, 3]),
     ValueError, r"at least two groups; all items carry one label"),
    ("bootstrap level 95", call(bootstrap_interval, statistic=len, groups=5, level=95),
     ValueError, r"level must lie in \(0, 1\), got 95"),
    ("AP resampled past the items",
     lambda tmp, mp: lambda: mask_ap([torch.ones(1, 4, 4, dtype=torch.bool)], [torch.ones(1)],
                                     [torch.zeros(1)], [torch.ones(1, 4, 4, dtype=torch.bool)],
                                     [torch.zeros(1)]).resampled([0, 3]),
     ValueError, r"items must index the 1 items, got 0\.\.3"),
    ("Table row of the wrong width", call(Table.of, header=["a", "b"], rows=[["x"]]), ValueError,
     r"Every row needs 2 cells \(one per header column\); rows \[0\] do not"),
    ("concept-parts grid four wide",
     lambda tmp, mp: lambda: show_concept_parts(make_concept_parts(2, image_size=32), ncols=4), ValueError,
     r"ncols must lie in \[1, 3\].*got 4"),
    ("conformal alpha=1.5", call(conformal_quantile, scores=np.arange(10.0), alpha=1.5),
     ValueError, r"alpha \(the miscoverage rate\) must lie strictly between 0 and 1; got 1\.5"),
    ("conformal alpha=0", lambda tmp, mp: lambda: calibrated().predict_sets(CP_F, 0.0),
     ValueError, r"strictly between 0 and 1; got 0\.0"),
    ("conformal calibration too small for alpha",
     call(conformal_quantile, scores=np.arange(10.0), alpha=0.05), ValueError,
     r"10 calibration images are too few for alpha=0\.05.*n ≥ 1/alpha − 1 = 19"),
    ("conformal NaN scores", call(conformal_quantile, scores=[0.1, math.nan, 0.3], alpha=0.5),
     ValueError, r"1 calibration scores are NaN"),
    ("conformal NaN features", lambda tmp, mp: lambda: calibrated().explain(CP_F * math.nan),
     ValueError, r"features contain NaN"),
    ("conformal class absent from calibration",
     lambda tmp, mp: lambda: calibrated(labels=np.arange(30) % 2), ValueError,
     r"classes \[2\] are absent from the calibration set"),
    ("baseline class absent from calibration",
     call(baseline_sets, probs_cal=CP_P, labels_cal=np.arange(30) % 2, probs_test=CP_P,
          method="APS", alphas=0.2), ValueError, r"classes \[2\] are absent"),
    ("baseline NaN probabilities",
     call(baseline_sets, probs_cal=CP_P * math.nan, labels_cal=np.arange(30) % 3,
          probs_test=CP_P, method="LAC", alphas=0.2), ValueError, r"contain NaN"),
    ("baseline RAPS calibration too small",
     call(baseline_sets, probs_cal=CP_P, labels_cal=np.arange(30) % 3, probs_test=CP_P,
          method="RAPS", alphas=0.1), ValueError, r"RAPS tunes k\* and λ on 20% .*6 of 30"),
    ("CHiQPM rho=1.5", call(CHiQPM, rho=1.5), ValueError, r"rho .* must lie in \[0, 1\]; got 1\.5"),
    ("CHiQPM rho=-0.1", call(forced_pairs, similarity=np.eye(4), rho=-0.1), ValueError,
     r"must lie in \[0, 1\]"),
    ("CHiQPM more pairs than classes have", call(forced_pairs, similarity=np.eye(2), rho=1.0),
     ValueError, r"asks for 2 forced pairs but 2 classes have only 1"),
    ("CHiQPM infeasible forced sharing", chiqpm_infeasible, ValueError,
     r"forced sharing is infeasible: 6 class pairs \(rho=1\.0\) must each share exactly "
     r"k − 1 = 1.*Lower rho"),
    ("Q-SENN n_f < k", qsenn_fit(2, 3), ValueError,
     r"per_class \(k\) must lie in \[1, n_features=2\].*cannot use more features"),
    ("Q-SENN k·n_c > number of weights",
     call(quantise_ternary, weight=torch.ones(2, 3), per_class=4), ValueError,
     r"k·n_c = 4·2 = 8 weights to keep, but the matrix has only 6 entries.*lower per_class"),
    ("Q-SENN all-zero path entry", call(quantise_ternary, weight=torch.zeros(3, 4), per_class=1),
     ValueError, r"the solution is all zero, so there is nothing to quantise.*smaller epsilon"),
    ("Q-SENN features with constant columns", qsenn_fit(4, 2, constant=True), ValueError,
     r"Only 3 of the 12 features vary over these samples, fewer than n_features=4"),
    ("Q-SENN every selected feature constant", qsenn_fit(4, 2, constant_selected=True),
     ValueError, r"all 4 selected features are constant over these samples.*without selection"),
    ("Q-SENN refit path of one point", call(QSENN, refit_lambdas=1), ValueError,
     r"refit_lambdas must lie in \[2, n_lambdas=100\].*got 1"),
    ("Q-SENN iterate reusing a fit that was never made", qsenn_iterate_without_refit(False),
     NotFittedError, r"not fitted yet: call fit\(features\) first"),
    ("Q-SENN iterate reusing a fit on other features", qsenn_iterate_without_refit(True),
     ValueError, r"reuses a fit on 12 features, but the model has 8.*refit_first=True"),
    ("DINO-QPM backbone timm does not know",
     call(frozen_vit, name="timm:vit_no_such_dinov2", pretrained=False), ValueError,
     r"timm has no model 'vit_no_such_dinov2'; see timm\.list_models"),
    ("DINO-QPM image size not a multiple of the patch", lambda tmp, mp: lambda: frozen_vit(
        "timm:vit_tiny_patch16_224", image_size=20, pretrained=False, patch_size=8, embed_dim=16,
        depth=1, num_heads=2)(torch.rand(1, 3, 20, 20)), ValueError,
     r"height and width divisible by the patch size \(8, 8\), got \(20, 20\)"),
    ("load_data: a concept-parts option the generator does not take",
     call(load_data, source="concept_parts", n_train=20, n_test=10, rotaton=30), TypeError,
     r"\['rotaton'\] are not concept-parts options.*'rotation'"),
    ("concept parts rotation beyond 180 degrees", call(make_concept_parts, n_images=2, rotation=200),
     ValueError, r"rotation must lie in \[0, 180\], got 200"),
    ("pretraining objective unknown", call(PretrainConfig, objective="mae"), ValueError,
     r"objective='mae' is unknown; use one of \('labels', 'masked'\)"),
    ("Plausibility masks of the wrong size",
     call(plausibility, maps=torch.rand(2, 3, 6, 6), weight=torch.rand(4, 3),
          predicted=torch.tensor([0, 1]), masks=torch.ones(2, 40, 48)), ValueError,
     r"masks of size 40x48 do not fit the 6x6 patch grid"),
    ("USAM click outside the image", usam_clicks(torch.tensor([[[40.0, 5.0]]])), ValueError,
     r"1 click\(s\) lie outside the 32×32 image.*pixel coordinates in \[0, 31\]"),
    ("USAM empty prompt set", usam_clicks(torch.zeros(1, 0, 2)), ValueError,
     r"the prompt set is empty.*at least one click"),
    ("USAM masks of another size than the images", usam_masks_of_another_size, ValueError,
     r"masks are \(16, 16\) pixels but the images \(32, 32\).*resize the masks"),
    ("SAM 2.1 click outside the image", usam_sam2_instance(points=((12.0, 3.0),)), ValueError,
     r"instance 0: click \(x, y\) = \(12\.0, 3\.0\) lies outside the 10×8 image"),
    ("SAM 2.1 empty prompt set", usam_sam2_instance(points=()), ValueError,
     r"instance 0: the prompt set has shape \(0, 2\); give at least one"),
    ("SAM 2.1 mask of another size", usam_sam2_instance(mask_shape=(4, 5)), ValueError,
     r"instance 0: the mask is \(4, 5\) but its image is \(8, 10\).*image's own size"),
    ("mask folder without its folders", lambda tmp, mp: lambda: mask_folder_instances(tmp),
     FileNotFoundError, r"needs two folders, images/ and masks/"),
    ("mask folder: an image without a mask", mask_folder(mask=False), FileNotFoundError,
     r"a\.png has no mask: expected .*masks/a\.png"),
    ("mask folder: a mask of another size", mask_folder(mask_size=(4, 5)), ValueError,
     r"a\.png is 5×4 but its image is 10×8 \(width × height\)"),
    ("mask folder: no instance", mask_folder(value=0), ValueError,
     r"hold no instance of at least 10 px²"),
    ("USAM cascade threshold 1.5", call(cascade, predicted_gap=torch.zeros(3), threshold=1.5),
     ValueError, r"cascade threshold .* must lie in \[0, 1\], got 1\.5"),
    ("USAM cascade threshold -0.1", call(cascade, predicted_gap=torch.zeros(3), threshold=-0.1),
     ValueError, r"must lie in \[0, 1\], got -0\.1"),
    ("VPP runs scored with run options",
     call(evaluate_clips, model=ClipRuns([[]], [torch.ones(1, 2, 4)]), data=make_moving_shapes(
         n_videos=1, n_frames=1, image_size=16), mode="masked"), ValueError,
     r"run options \['mode'\] were given with finished runs; pass them to run_clips"),
    ("VPP runs scored on other data",
     call(evaluate_clips, model=ClipRuns([[], []], [torch.ones(1, 2, 4)] * 2),
          data=make_moving_shapes(n_videos=1, n_frames=1, image_size=16)), ValueError,
     r"the runs cover 2 clips but the data has 1; score runs on the data they were made on"),
    ("VPP run_clips batch 0",
     call(run_clips, model=VideoSegmenter(VPP_CONFIG), batch_size=0,
          data=make_moving_shapes(n_videos=1, n_frames=1, image_size=16)), ValueError,
     r"batch_size must be at least 1, got 0"),
    ("VPP selectivity on other data",
     call(selectivity, runs=ClipRuns([[], []], [torch.ones(1, 12, 4)] * 2),
          data=make_moving_shapes(n_videos=1, n_frames=1, image_size=16),
          schedule=KeepRatioSchedule(), patch_size=8), ValueError,
     r"the runs cover 2 clips but the data has 1; measure runs on the data they were made on"),
    ("speed-up of timings of different rounds",
     call(speedup_interval, base=Timing(1.0, 1.0, 1.0, 3, (1.0, 1.0, 1.0)),
          other=Timing(1.0, 1.0, 1.0, 2, (1.0, 1.0))), ValueError,
     r"Need two timings of the same rounds \(at least 2\) from time_interleaved, got 3 and 2"),
]


@pytest.mark.parametrize("make, error, fragment", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(tmp_path, monkeypatch, make, error, fragment):
    bad_call = make(tmp_path, monkeypatch)
    with pytest.raises(error, match=fragment):
        bad_call()
