"""A reader's own images with instance masks, read like the COCO subset."""

import numpy as np
from PIL import Image

from companion.data.mask_folder import mask_folder_instances


def _write(root, name, ids, mode="L"):
    (root / "images").mkdir(exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    Image.fromarray(np.full((*ids.shape, 3), 80, dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
    Image.fromarray(ids.astype(np.uint8), mode=mode).save(root / "masks" / f"{name}.png")


def test_each_value_of_a_mask_is_one_instance(tmp_path):
    ids = np.zeros((20, 30), dtype=np.uint8)
    ids[2:8, 2:8] = 3      # 36 px²
    ids[10:18, 5:25] = 7   # 160 px²
    ids[0, 29] = 9         # 1 px²: under the paper's 10 px²
    _write(tmp_path, "a", ids)
    binary = np.zeros((10, 12), dtype=np.uint8)
    binary[2:6, 3:9] = 255
    _write(tmp_path, "b", binary)
    data = mask_folder_instances(tmp_path)
    assert len(data.images) == 2 and data.image_index == [0, 0, 1]
    assert data.categories == ["a:3", "a:7", "b:255"]
    assert [int(m.sum()) for m in data.masks] == [36, 160, 24]
    assert all(m.shape == data.images[i].shape[:2] for m, i in zip(data.masks, data.image_index,
                                                                    strict=True))


def test_a_palette_mask_reads_its_indices(tmp_path):
    ids = np.zeros((12, 12), dtype=np.uint8)
    ids[1:5, 1:5], ids[6:11, 6:11] = 1, 2
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(tmp_path / "images" / "p.png")
    mask = Image.fromarray(ids, mode="P")
    mask.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * 759)
    mask.save(tmp_path / "masks" / "p.png")
    assert [int(m.sum()) for m in mask_folder_instances(tmp_path).masks] == [16, 25]
