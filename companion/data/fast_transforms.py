"""Faster equivalents of torchvision transforms that return the same tensors, bit for bit.

The classification data runs these once per image and epoch on the CPU, in the loader's process:
torchvision's ``ToTensor`` + ``Normalize`` convert, check and copy each image twice,
``ColorJitter`` finds its random order of adjustments with up to ten comparisons of 0-d tensors,
and ``TrivialAugmentWide`` rebuilds its table of 14 operations and their magnitudes every time.
The replacements do the same float32 arithmetic in the same order and draw the same random
numbers, so items and everything trained on them are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T
from torchvision.transforms import functional as TF

__all__ = ["CachedTrivialAugmentWide", "FastColorJitter", "ToNormalizedTensor"]


class ToNormalizedTensor:
    """``ToTensor()`` then ``Normalize(mean, std)`` in one step: (x / 255 − μ) / σ, (C, H, W).

    RGB PIL images take a short path with μ and σ made once; other inputs (grey, 16-bit, arrays)
    go through torchvision's own functions. Both give the tensor torchvision's pair gives.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if any(s == 0 for s in self.std):
            raise ValueError(f"std must not contain zeros, got {self.std}.")
        self._mean = torch.tensor(self.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.std).view(-1, 1, 1)

    def __call__(self, pic: Image.Image | np.ndarray) -> Tensor:
        if not isinstance(pic, Image.Image) or pic.mode != "RGB":
            return TF.normalize(TF.to_tensor(pic), self.mean, self.std)
        pixels = torch.from_numpy(np.array(pic, np.uint8)).permute(2, 0, 1).contiguous()
        image = pixels.to(torch.get_default_dtype()).div_(255)
        return image.sub_(self._mean.to(image.dtype)).div_(self._std.to(image.dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


class CachedTrivialAugmentWide(T.TrivialAugmentWide):
    """``TrivialAugmentWide`` building its table of operations and magnitudes once, not per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._spaces: dict[int, dict[str, tuple[Tensor, bool]]] = {}

    def _augmentation_space(self, num_bins: int) -> dict[str, tuple[Tensor, bool]]:
        if num_bins not in self._spaces:
            self._spaces[num_bins] = super()._augmentation_space(num_bins)
        return self._spaces[num_bins]


class FastColorJitter(T.ColorJitter):
    """``ColorJitter`` walking its random order of adjustments as Python ints, not 0-d tensors."""

    def forward(self, img: Image.Image | Tensor) -> Image.Image | Tensor:
        order, *factors = self.get_params(self.brightness, self.contrast, self.saturation,
                                          self.hue)
        adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for i in order.tolist():
            if factors[i] is not None:
                img = adjust[i](img, factors[i])
        return img
