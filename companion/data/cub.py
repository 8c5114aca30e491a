"""CUB-200-2011 birds: images, labels, boxes, 15 part locations, 312 attributes, segmentations.

Follows torchvision's dataset contract: ``root`` holds ``CUB_200_2011/`` (and ``attributes.txt``
and ``segmentations/`` beside it, as the official archives unpack), ``download=True`` fetches the
archives with checksums, and a missing or damaged copy raises an error that says what is wrong.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..download import download, unpack, unpack_interrupted
from ..runtime import cache_dir
from .checks import check_choice
from .decoded import DecodedImages, decoded_images
from .transforms import image_transforms, resize_size

N_PARTS = 15
N_ATTRIBUTES = 312


@dataclass(frozen=True)
class Resource:
    """A file to download: its address, name and checksums."""

    url: str
    filename: str
    sha256: str | None
    md5: str | None = None


# SHA-256 as listed by torchvision's prototype datasets and TFDS (same 1,150,585,339 bytes);
# MD5 as published with the torchvision-style loaders.
ARCHIVE = Resource(
    url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
    filename="CUB_200_2011.tgz",
    sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
    md5="97eceeb196236b17998738112f37df78",
)
SEGMENTATIONS = Resource(
    url="https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz?download=1",
    filename="segmentations.tgz",
    sha256="dc77f6cffea0cbe2e41d4201115c8f29a6320ecb04fffd2444f51b8066e4b84f",
    md5="4d47ba1228eae64f2fa547c47bc65255",
)

_ANNOTATIONS = ("images.txt", "image_class_labels.txt", "train_test_split.txt",
                "bounding_boxes.txt", "classes.txt", "parts/parts.txt", "parts/part_locs.txt",
                "attributes/image_attribute_labels.txt")


@dataclass(frozen=True, eq=False)
class CUBAnnotation:
    """The annotations of one image, in the pixel frame of the image the dataset returns."""

    image_id: int               # CUB's 1-based image id
    path: Path
    label: int                  # 0-based class index
    bbox: np.ndarray            # (4,) x, y, width, height
    parts: np.ndarray           # (15, 2) x, y of each part (0 where not visible)
    part_visible: np.ndarray    # (15,) bool
    attributes: np.ndarray      # (312,) bool: the annotator saw the attribute
    certainty: np.ndarray       # (312,) 1 not visible, 2 guessing, 3 probably, 4 definitely
    segmentation: np.ndarray | None  # (H, W) float32 in [0, 1], when loaded with segmentations


class CUB200(Dataset):
    """CUB-200-2011 (Wah et al. 2011): 200 bird species, 5,994 training and 5,794 test images.

    ``__getitem__`` returns ``(image, label)``, or ``(image, label, mask)`` with
    ``segmentations=True``; ``annotations(i)`` gives box, parts, attributes and mask of image i.
    ``crop_to_bbox`` crops image, parts and mask to the bird's box. Keep ``transform`` and
    ``mask_transform`` free of random geometry when they must stay aligned.
    """

    base_folder = "CUB_200_2011"
    archive = ARCHIVE
    segmentation_archive = SEGMENTATIONS

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 download: bool = False, crop_to_bbox: bool = False, segmentations: bool = False,
                 mask_transform: Callable | None = None) -> None:
        self.root = Path(root).expanduser()
        self.split = check_choice("split", split, ("train", "test"))
        self.transform, self.target_transform = transform, target_transform
        self.mask_transform = mask_transform
        self.crop_to_bbox, self.segmentations = bool(crop_to_bbox), bool(segmentations)
        self.decoded: DecodedImages | None = None  # see keep_decoded
        if download:
            self._download()
        self._load()

    # -- public API ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        image, mask, _ = self._read(index)
        label = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        if not self.segmentations:
            return image, label
        return image, label, (mask if self.mask_transform is None else self.mask_transform(mask))

    def segmentation(self, index: int):
        """The mask of image ``index`` (``mask_transform`` applied), without decoding the image."""
        if not self.segmentations:
            raise ValueError("this CUB200 was made without segmentations: pass "
                             "segmentations=True to read the masks.")
        _, mask, _ = self._read(index, image=False)
        return mask if self.mask_transform is None else self.mask_transform(mask)

    def annotations(self, index: int) -> CUBAnnotation:
        """Box, parts, attributes (and mask) of image ``index``, in the returned image's frame."""
        _, mask, origin = self._read(index, image=False)
        bbox = self.bboxes[index].copy()
        bbox[:2] -= origin
        parts = np.where(self.part_visible[index, :, None], self.part_locs[index] - origin, 0.0)
        return CUBAnnotation(
            image_id=int(self.image_ids[index]), path=self.paths[index],
            label=self.targets[index], bbox=bbox, parts=parts.astype(np.float32),
            part_visible=self.part_visible[index].copy(),
            attributes=self.attributes[index].copy(), certainty=self.certainties[index].copy(),
            segmentation=None if mask is None else np.asarray(mask, np.float32) / 255.0)

    def keep_decoded(self, resize: int, limit_mb: float | None = None) -> bool:
        """Decode every image once, resized to shorter side ``resize``, and read it from memory since.

        The transform's own ``Resize(resize)`` then returns the same pixels, so items are unchanged;
        the pixels are cached on disk for the next run (``companion.data.decoded``). Returns
        whether they are kept (not above ``limit_mb``, ``$COMPANION_IMAGE_CACHE_MB``).
        """
        if self.crop_to_bbox or self.segmentations:
            raise ValueError("keep_decoded keeps whole images without masks; it cannot be used with "
                             "crop_to_bbox=True or segmentations=True (those read every file).")
        self.decoded = None
        self.decoded = decoded_images(self.paths, resize, lambda i: self._read(i)[0],
                                      name=f"cub_{self.split}", limit_mb=limit_mb)
        return self.decoded is not None

    def class_attribute_matrix(self) -> np.ndarray:
        """``(200, 312)`` percentage of each class's images showing each attribute."""
        path = self._folder / "attributes" / "class_attribute_labels_continuous.txt"
        matrix = self._numbers(path, N_ATTRIBUTES, float)
        if matrix.shape != (len(self.classes), N_ATTRIBUTES):
            self._corrupt(f"{path.name} has shape {matrix.shape}, expected "
                          f"({len(self.classes)}, {N_ATTRIBUTES})")
        return matrix.astype(np.float32)

    def __repr__(self) -> str:
        return (f"CUB200(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"crop_to_bbox={self.crop_to_bbox}, segmentations={self.segmentations})")

    # -- loading ------------------------------------------------------------------------------

    @property
    def _folder(self) -> Path:
        return self.root / self.base_folder

    @property
    def _segmentation_folder(self) -> Path:
        for folder in (self.root / "segmentations", self._folder / "segmentations"):
            if folder.is_dir():
                return folder
        return self.root / "segmentations"

    def _attribute_names_file(self) -> Path:
        for path in (self.root / "attributes.txt", self._folder / "attributes.txt",
                     self._folder / "attributes" / "attributes.txt"):
            if path.is_file():
                return path
        return self.root / "attributes.txt"

    def _hint(self) -> str:
        return (f"Use download=True, or download {self.archive.filename} by hand into "
                f"{self.root} and unpack it there"
                + (f" (and {self.segmentation_archive.filename} for the segmentations)"
                   if self.segmentations else "") + ".")

    def _missing(self, what: str):
        raise FileNotFoundError(f"Dataset not found or corrupted at {self.root}: {what}. "
                                + self._hint())

    def _corrupt(self, what: str):
        raise RuntimeError(f"Dataset not found or corrupted at {self.root}: {what}. Delete "
                           f"{self._folder} and use download=True, or download "
                           f"{self.archive.filename} by hand into {self.root} and unpack it there.")

    def _annotations_present(self) -> bool:
        return (all((self._folder / name).is_file() for name in _ANNOTATIONS)
                and self._attribute_names_file().is_file())

    def _download(self) -> None:
        resources = [(self.archive, self._annotations_present)]
        if self.segmentations:
            resources.append((self.segmentation_archive, self._segmentation_folder.is_dir))
        # an unpacking that was killed half-way leaves its marker: redo it from the archive
        needed = [(resource, present) for resource, present in resources
                  if unpack_interrupted(self.root / resource.filename, self.root) or not present()]
        if needed:
            self.root.mkdir(parents=True, exist_ok=True)
        for resource, present in needed:
            archive = download(resource.url, resource.sha256, resource.filename, self.root,
                               md5=resource.md5)
            self._unpack(archive, present)

    def _unpack(self, archive: Path, present: Callable[[], bool] | None = None) -> None:
        """Extract next to ``root`` and move each top-level entry into ``root`` (resumable; a
        process that finds the work done by another while it waited skips it)."""
        unpack(archive, self.root, done=present)

    def _numbers(self, path: Path, n_cols: int, dtype) -> np.ndarray:
        """The first ``n_cols`` numeric columns of a whitespace-separated file (extra ignored)."""
        if not path.is_file():
            self._missing(f"{path.relative_to(self.root)} is missing")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # empty file: reported below
                return np.loadtxt(path, usecols=range(n_cols), dtype=dtype, ndmin=2)
        except ValueError as err:
            self._corrupt(f"{path.relative_to(self.root)} is malformed ({err})")

    def _names(self, path: Path) -> tuple[np.ndarray, list[str]]:
        """``id name`` lines (the name may hold spaces)."""
        if not path.is_file():
            self._missing(f"{path.relative_to(self.root)} is missing")
        ids, names = [], []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            head, _, name = line.strip().partition(" ")
            if not head.isdigit() or not name.strip():
                self._corrupt(f"{path.relative_to(self.root)} line {number} is not "
                              f"'<id> <name>': {line!r}")
            ids.append(int(head))
            names.append(name.strip())
        return np.asarray(ids, np.int64), names

    def _rows_for(self, name: str, table: np.ndarray, ids: np.ndarray, per_image: int = 1
                  ) -> np.ndarray:
        """Rows of ``table`` (keyed by column 0 and, if ``per_image > 1``, column 1) in id order."""
        expected = len(ids) * per_image
        if len(table) != expected:
            self._corrupt(f"{name} has {len(table)} lines, expected {expected} "
                          f"({len(ids)} images{f' x {per_image}' if per_image > 1 else ''})")
        row = np.searchsorted(ids, table[:, 0].astype(np.int64))
        row = np.minimum(row, len(ids) - 1)
        if not np.array_equal(ids[row], table[:, 0].astype(np.int64)):
            bad = table[ids[row] != table[:, 0].astype(np.int64), 0][0]
            self._corrupt(f"{name} names image id {int(bad)}, which images.txt does not list")
        key = row * per_image
        if per_image > 1:
            sub = table[:, 1].astype(np.int64) - 1
            if sub.min() < 0 or sub.max() >= per_image:
                self._corrupt(f"{name} has an index outside 1..{per_image} in column 2")
            key = key + sub
        if np.bincount(key, minlength=expected).max() != 1:
            self._corrupt(f"{name} lists some image{' and index' if per_image > 1 else ''} twice")
        out = np.empty_like(table)
        out[key] = table
        return out.reshape(len(ids), per_image, -1) if per_image > 1 else out

    def _load(self) -> None:
        if not self._folder.is_dir():
            self._missing(f"there is no folder {self.base_folder}")
        missing = [name for name in _ANNOTATIONS if not (self._folder / name).is_file()]
        if missing:
            self._missing(f"{', '.join(missing)} missing in {self._folder}")
        ids, paths = self._names(self._folder / "images.txt")
        order = np.argsort(ids)
        ids, paths = ids[order], [paths[i] for i in order]
        if len(ids) == 0 or len(np.unique(ids)) != len(ids):
            self._corrupt("images.txt is empty or lists an id twice")
        class_ids, class_folders = self._names(self._folder / "classes.txt")
        if not np.array_equal(class_ids, np.arange(1, len(class_ids) + 1)):
            self._corrupt("classes.txt does not number its classes 1, 2, ...")
        f = self._folder
        labels = self._rows_for("image_class_labels.txt",
                                self._numbers(f / "image_class_labels.txt", 2, np.int64), ids)[:, 1]
        is_train = self._rows_for("train_test_split.txt",
                                  self._numbers(f / "train_test_split.txt", 2, np.int64), ids)[:, 1]
        boxes = self._rows_for("bounding_boxes.txt",
                               self._numbers(f / "bounding_boxes.txt", 5, np.float64), ids)[:, 1:]
        part_ids, part_names = self._names(f / "parts" / "parts.txt")
        if len(part_ids) != N_PARTS:
            self._corrupt(f"parts/parts.txt lists {len(part_ids)} parts, expected {N_PARTS}")
        locs = self._rows_for("parts/part_locs.txt",
                              self._numbers(f / "parts" / "part_locs.txt", 5, np.float64), ids,
                              N_PARTS)
        _, attribute_names = self._names(self._attribute_names_file())
        if len(attribute_names) != N_ATTRIBUTES:
            self._corrupt(f"attributes.txt lists {len(attribute_names)} attributes, expected "
                          f"{N_ATTRIBUTES}")
        attributes = self._rows_for(
            "attributes/image_attribute_labels.txt",
            self._numbers(f / "attributes" / "image_attribute_labels.txt", 4, np.int64), ids,
            N_ATTRIBUTES)
        if labels.min() < 1 or labels.max() > len(class_folders):
            self._corrupt(f"image_class_labels.txt has labels outside 1..{len(class_folders)}")
        if not np.isin(is_train, (0, 1)).all():
            self._corrupt("train_test_split.txt holds values other than 0 and 1")
        if (boxes[:, 2:] <= 0).any():
            self._corrupt("bounding_boxes.txt has a box of zero or negative size")
        if not (np.isin(attributes[..., 2], (0, 1)).all()
                and np.isin(attributes[..., 3], (1, 2, 3, 4)).all()):
            self._corrupt("image_attribute_labels.txt has is_present not in {0, 1} or "
                          "certainty not in 1..4")
        for path, label in zip(paths, labels, strict=True):
            if Path(path).parts[0] != class_folders[label - 1]:
                self._corrupt(f"image {path} sits in the folder of another class than its label "
                              f"{label} ({class_folders[label - 1]})")

        keep = np.flatnonzero(is_train == (1 if self.split == "train" else 0))
        self.image_ids = ids[keep]
        self.paths = [self._folder / "images" / paths[i] for i in keep]
        self.targets = (labels[keep] - 1).tolist()
        self.classes = [name.partition(".")[2].replace("_", " ") or name for name in class_folders]
        self.part_names = part_names
        self.attribute_names = attribute_names
        self.bboxes = boxes[keep].astype(np.float32)
        self.part_locs = locs[keep][..., 2:4].astype(np.float32)
        self.part_visible = locs[keep][..., 4] > 0
        self.attributes = attributes[keep][..., 2].astype(bool)
        self.certainties = attributes[keep][..., 3].astype(np.uint8)
        absent = [p for p in self.paths if not p.is_file()]
        if absent:
            self._missing(f"{len(absent)} images of the {self.split} split are missing, e.g. "
                          f"{absent[0]}")
        if self.segmentations:
            absent = [p for p in map(self._mask_path, range(len(self))) if not p.is_file()]
            if absent:
                self._missing(f"{len(absent)} segmentations are missing, e.g. {absent[0]}")

    def _mask_path(self, index: int) -> Path:
        relative = self.paths[index].relative_to(self._folder / "images")
        return self._segmentation_folder / relative.with_suffix(".png")

    def _read(self, index: int, image: bool = True):
        """The (cropped) image, its mask (or None) and the crop's top-left corner."""
        if image and self.decoded is not None:  # only without crops and masks (keep_decoded)
            return self.decoded[index], None, np.zeros(2, np.float32)
        path = self.paths[index]
        try:
            with Image.open(path) as raw:
                size = raw.size
                picture = raw.convert("RGB") if image else None
            mask = None
            if self.segmentations:
                with Image.open(self._mask_path(index)) as raw_mask:
                    mask = raw_mask.convert("L")
        except OSError as err:
            self._corrupt(f"cannot read {path.name} or its mask ({err})")
        if mask is not None and mask.size != size:
            raise RuntimeError(
                f"Dataset not found or corrupted at {self.root}: the segmentation "
                f"{self._mask_path(index)} is {mask.size[0]}x{mask.size[1]} pixels but its image "
                f"{path.name} is {size[0]}x{size[1]}. Delete {self._segmentation_folder} and use "
                "download=True with segmentations=True to fetch the masks again.")
        origin = np.zeros(2, np.float32)
        if self.crop_to_bbox:
            x, y, w, h = self.bboxes[index]
            box = (max(0, int(np.floor(x))), max(0, int(np.floor(y))),
                   min(size[0], int(np.ceil(x + w))), min(size[1], int(np.ceil(y + h))))
            picture = picture.crop(box) if picture is not None else None
            mask = mask.crop(box) if mask is not None else None
            origin = np.asarray(box[:2], np.float32)
        return picture, mask, origin


@dataclass(frozen=True)
class CUBSplits:
    """The three views of CUB a classification chapter trains and measures on."""

    train: CUB200       # training split, augmented: for training and fine-tuning
    eval_train: CUB200  # training split with the test transform: for cached features
    test: CUB200        # test split with the test transform
    classes: list[str]  # species names, from classes.txt

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def cub_splits(root: str | os.PathLike | None = None, *, image_size: int = 224,
               resize: int | None = None, trivial_augment: bool = False,
               download: bool = True, keep_decoded: bool = True) -> CUBSplits:
    """CUB-200-2011 as augmented train, plain train and plain test sets (see :func:`image_transforms`).

    ``root=None`` uses the companion cache (``cache_dir("cub")``); ``download=True`` fetches the
    archive there unless a complete copy is present. ``keep_decoded`` decodes each split's
    images once (:meth:`CUB200.keep_decoded`, shared by the two training views) instead of in
    every epoch, where they fit the limit of ``companion.data.decoded``.
    """
    root = cache_dir("cub") if root is None else Path(root).expanduser()
    augmented, plain = image_transforms(image_size, resize, trivial_augment)
    train = CUB200(root, "train", transform=augmented, download=download)
    test = CUB200(root, "test", transform=plain)
    if keep_decoded:
        train.keep_decoded(resize_size(image_size, resize))
        test.keep_decoded(resize_size(image_size, resize))
    eval_train = copy.copy(train)  # the same split and pixels, read once, with the test transform
    eval_train.transform = plain
    return CUBSplits(train=train, eval_train=eval_train, test=test, classes=list(train.classes))
