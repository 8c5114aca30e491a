"""DAVIS 2017 (Pont-Tuset et al.): video object segmentation clips with per-frame instance masks.

On-disk format (as unpacked from the official archive)::

    DAVIS/JPEGImages/480p/<sequence>/00000.jpg
    DAVIS/Annotations/480p/<sequence>/00000.png   palette PNG, pixel value = object id (0 = background)
    DAVIS/ImageSets/2017/train.txt | val.txt        one sequence name per line

DAVIS has no object classes, so every object gets class 0 ("object"): the full world measures
class-agnostic video instance segmentation.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..download import download, unpack, unpack_interrupted
from .checks import check_choice, check_int
from .moving_shapes import MovingShapes

URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip"
# 832,766,765 bytes; the SHA-256 TensorFlow Datasets records for this archive.
SHA256 = "e3d0b5b77c3d031b000a19e0e25e3e2cac65d183755601bc2cf066df1a2aa492"
SPLITS = ("train", "val")
ARCHIVE_NAME = URL.rsplit("/", 1)[-1]


class DAVIS2017(Dataset):
    """DAVIS 2017 clips as ``{"frames", "masks", "labels", "name"}`` (torchvision's contract).

    ``root`` holds the ``DAVIS`` folder; ``download=True`` fetches and unpacks the official
    480p archive (about 800 MB) into it. ``image_size`` resizes frames to a square (bilinear) and
    masks (nearest); ``max_frames`` keeps the first frames of each clip; ``max_objects`` pads or cuts
    the object slots so that clips can be batched.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", download: bool = False,
                 image_size: int | None = None, max_frames: int | None = None,
                 max_objects: int = 10):
        split = check_choice("split", split, SPLITS)
        image_size = None if image_size is None else check_int("image_size", image_size)
        max_frames = None if max_frames is None else check_int("max_frames", max_frames)
        max_objects = check_int("max_objects", max_objects)
        self.root = Path(root).expanduser()
        self.split, self.image_size = split, image_size
        self.max_frames, self.max_objects = max_frames, max_objects
        archive = self.root / ARCHIVE_NAME
        if download and (self._problem() is not None or unpack_interrupted(archive, self.root)):
            shutil.rmtree(self.root / "DAVIS.extracting-root", ignore_errors=True)  # older layout
            unpack(download_archive(self.root), self.root, done=lambda: self._problem() is None)
        problem = self._problem()
        if problem is not None:
            raise RuntimeError(f"Dataset not found or corrupted at {self.base}: {problem}. You can "
                               "use download=True to download it (it replaces a damaged copy).")
        self.sequences = self._read_split()

    @property
    def base(self) -> Path:
        return self.root / "DAVIS"

    @property
    def _split_file(self) -> Path:
        return self.base / "ImageSets" / "2017" / f"{self.split}.txt"

    def _read_split(self) -> list[str]:
        return [line.strip() for line in self._split_file.read_text().splitlines() if line.strip()]

    def _problem(self) -> str | None:
        """What is wrong with the copy on disk, or None: every listed sequence has frames and
        one annotation per frame."""
        if not self._split_file.is_file():
            return f"{self._split_file.relative_to(self.root)} is missing"
        sequences = self._read_split()
        if not sequences:
            return f"{self._split_file.name} lists no sequences (the file is empty or truncated)"
        for seq in sequences:
            frames = sorted((self.base / "JPEGImages" / "480p" / seq).glob("*.jpg"))
            masks = sorted((self.base / "Annotations" / "480p" / seq).glob("*.png"))
            if not frames:
                return (f"{self._split_file.name} lists the sequence {seq!r}, which has no frames "
                        f"in JPEGImages/480p/{seq} (a truncated {self._split_file.name} or a "
                        "partial copy)")
            if [f.stem for f in frames] != [m.stem for m in masks]:
                return (f"the frames of sequence {seq!r} and its annotations in "
                        f"Annotations/480p/{seq} do not match one to one")
        return None

    def __len__(self) -> int:
        return len(self.sequences)

    def _open(self, path: Path, mode: str | None) -> np.ndarray:
        """The pixels of one frame or annotation, or an error that names the file."""
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert(mode) if mode else image).copy()
        except OSError as err:
            raise RuntimeError(f"Cannot read {path} ({err}): the file is damaged. Delete "
                               f"{self.base} and use download=True to download it again.") from err

    def __getitem__(self, index: int) -> dict:
        seq = self.sequences[index]
        frame_paths = sorted((self.base / "JPEGImages" / "480p" / seq).glob("*.jpg"))[: self.max_frames]
        pixels = [self._open(p, "RGB") for p in frame_paths]
        ids = [self._open(self.base / "Annotations" / "480p" / seq / f"{p.stem}.png", None)
               for p in frame_paths]
        def wh(array: np.ndarray) -> str:
            return f"{array.shape[1]}x{array.shape[0]}"
        again = (f"the dataset is corrupted. Delete {self.base} and use download=True to download "
                 "it again.")
        for path, frame, annotation in zip(frame_paths, pixels, ids, strict=True):
            if frame.shape != pixels[0].shape:
                raise RuntimeError(f"Sequence {seq}: frame {path.name} is {wh(frame)} pixels but "
                                   f"{frame_paths[0].name} is {wh(pixels[0])}; {again}")
            if annotation.shape != frame.shape[:2]:
                raise RuntimeError(f"Sequence {seq}: the annotation {path.stem}.png is "
                                   f"{wh(annotation)} pixels but its frame is {wh(frame)}; {again}")
        frames = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255.0
        ids = torch.from_numpy(np.stack(ids).astype(np.int64))
        objects = [int(i) for i in ids.unique() if 0 < i < 255][: self.max_objects]
        masks = torch.zeros(len(frame_paths), self.max_objects, *ids.shape[-2:], dtype=torch.bool)
        for k, obj in enumerate(objects):
            masks[:, k] = ids == obj
        labels = torch.full((self.max_objects,), -1, dtype=torch.long)
        labels[: len(objects)] = 0
        if self.image_size is not None:
            size = (self.image_size, self.image_size)
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
            masks = F.interpolate(masks.float(), size=size, mode="nearest").bool()
        return {"frames": frames, "masks": masks, "labels": labels, "name": seq}


def download_archive(root: str | os.PathLike) -> Path:
    """Fetch the official DAVIS 2017 train/val 480p archive into ``root`` (resumable, checked)."""
    return download(URL, sha256=SHA256, folder=root)


def to_clips(dataset: DAVIS2017, n_frames: int, max_clips: int | None = None) -> MovingShapes:
    """Cut every sequence into clips of ``n_frames`` frames and hold them like the synthetic set.

    Frames are stored as uint8 and masks as bool, so the training code of the smoke world runs
    unchanged on real data (one class, "object"). Use ``image_size`` on the dataset.
    """

    n_frames = check_int("n_frames", n_frames)
    max_clips = None if max_clips is None else check_int("max_clips", max_clips)
    if dataset.image_size is None:
        raise ValueError("to_clips needs frames of one size: create DAVIS2017(..., image_size=S).")
    videos, masks, labels = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        for start in range(0, item["frames"].shape[0] - n_frames + 1, n_frames):
            videos.append((item["frames"][start:start + n_frames] * 255).round().to(torch.uint8))
            masks.append(item["masks"][start:start + n_frames])
            labels.append(item["labels"])
            if max_clips is not None and len(videos) >= max_clips:
                break
        if max_clips is not None and len(videos) >= max_clips:
            break
    if not videos:
        raise ValueError(f"No sequence has {n_frames} frames; choose fewer frames per clip.")
    return MovingShapes(torch.stack(videos), torch.stack(masks), torch.stack(labels), ("object",))
