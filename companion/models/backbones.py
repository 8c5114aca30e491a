"""Backbones that give non-negative feature maps, one factory for them, and a pooled classifier."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..runtime import get_profile

__all__ = ["Backbone", "SmallCNN", "TimmBackbone", "Classifier", "create_backbone"]


class Backbone(nn.Module):
    """A network whose ``forward_features(x)`` gives ReLU feature maps ``(B, D, h, w)``.

    ``D`` is ``num_features`` (the papers' n_d: 2048 for ResNet50); the maps are the papers' M.
    """

    num_features: int
    in_chans: int

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a float ``(B, C, H, W)`` batch with ``in_chans`` channels."""
        expected = f"a float tensor of shape (B, C, H, W) with C = {self.in_chans}"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects {expected}, got {type(x).__name__}.")
        if x.ndim != 4:
            hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
            raise ValueError(f"{type(self).__name__} expects {expected}, got shape "
                             f"{tuple(x.shape)}{hint}.")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"{type(self).__name__} expects {expected}, got {x.shape[1]} channels "
                             f"(shape {tuple(x.shape)}); channels-last images need x.permute(0, 3, 1, 2).")
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__} expects {expected}, got dtype {x.dtype}; "
                            "convert with x.float() (and scale uint8 images to [0, 1]).")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps ``(B, D, h, w)``, all non-negative."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def _conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """3×3 conv → BatchNorm → ReLU, then 2×2 max pooling if ``pool``."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
              nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(Backbone):
    """Four conv–BatchNorm–ReLU blocks; the first three halve the size (64×64 input → 8×8 maps)."""

    def __init__(self, width: int = 64, in_chans: int = 3):
        super().__init__()
        if int(width) < 4:
            raise ValueError(f"width must be at least 4, got {width}.")
        widths = (max(width // 4, 4), max(width // 2, 4), width, width)
        self.in_chans, self.num_features = int(in_chans), int(width)
        chans = (self.in_chans, *widths)
        self.blocks = nn.Sequential(*(_conv_block(chans[i], chans[i + 1], pool=i < 3)
                                      for i in range(4)))

    min_size = 8  # three 2x2 poolings: smaller inputs would pool down to nothing

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"SmallCNN needs images of at least {self.min_size}x{self.min_size} "
                             f"pixels (its three 2x2 poolings halve the size three times), got "
                             f"{x.shape[-2]}x{x.shape[-1]}; resize or pad the images (64x64 is the "
                             "usual size).")
        return self.blocks(x)


def _reduce_strides(model: nn.Module) -> None:
    """Give ResNet ``layer3`` and ``layer4`` stride 1 (maps 4× larger in area per stage, no dilation)."""
    for name in ("layer3", "layer4"):
        stage = getattr(model, name, None)
        if not isinstance(stage, nn.Sequential) or len(stage) == 0:
            raise ValueError("reduced_strides=True needs a ResNet-style model with layer3 and layer4 "
                             f"stages; {type(model).__name__} has none.")
        for module in stage[0].modules():
            if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
                module.stride = (1, 1)
            elif isinstance(module, nn.AvgPool2d) and module.stride not in (1, (1, 1)):
                module.stride = 1  # avg-down shortcut (resnet-d variants)
                module.kernel_size = 1


def _check_pretrained_allowed(name: str) -> None:
    """Refuse a download in a profile that never downloads, and say what to do instead."""
    profile = get_profile()
    if not profile.real_data:
        raise RuntimeError(
            f"Pretrained weights for {name!r} are downloaded from the Hugging Face Hub, but the active "
            f"profile ({profile.name}, real_data=False) never downloads. Use "
            "companion.set_profile('full') on a machine with internet, pass pretrained_file= with "
            "weights you downloaded yourself, or keep pretrained=False (random initialisation).")


class TimmBackbone(Backbone):
    """A timm model as a backbone: CNN maps, or ViT patch tokens reshaped to a ``(h, w)`` grid.

    Non-negativity: CNN maps pass through a final ReLU (a no-op for ResNets, whose last block ends
    in one); ViT tokens likewise unless ``relu=False`` (for adapters that want the raw tokens).
    """

    def __init__(self, model_name: str, *, pretrained: bool = False,
                 pretrained_file: str | os.PathLike | None = None, reduced_strides: bool = False,
                 relu: bool = True, in_chans: int = 3, **kwargs):
        super().__init__()
        import timm

        if pretrained_file is not None:
            path = Path(pretrained_file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"pretrained_file {path} does not exist; download the weights "
                                        "for this timm model first or pass pretrained=True.")
            kwargs["pretrained_cfg_overlay"] = dict(file=str(path))
            pretrained = True
        elif pretrained:
            _check_pretrained_allowed(model_name)
        try:
            self.model = timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                           in_chans=in_chans, **kwargs)
        except RuntimeError as err:
            if "Unknown model" in str(err):
                raise ValueError(f"timm has no model {model_name!r}; see timm.list_models('*name*') "
                                 "for the available names.") from err
            raise
        except OSError as err:  # huggingface_hub errors when offline or the file is missing
            raise RuntimeError(f"Could not fetch pretrained weights for {model_name!r}: {err}. On a "
                               "machine without internet, download them elsewhere and pass "
                               "pretrained_file=..., or use pretrained=False.") from err
        if reduced_strides:
            _reduce_strides(self.model)
        self.model_name = model_name
        self.relu = bool(relu)
        self.in_chans = int(in_chans)
        self.num_features = int(self.model.num_features)
        self.is_vit = hasattr(self.model, "patch_embed") and hasattr(self.model, "num_prefix_tokens")

    def _check_vit_size(self, x: torch.Tensor) -> None:
        """Raise a clear error if a ViT cannot take inputs of this height and width."""
        embed = self.model.patch_embed
        fixed = getattr(embed, "img_size", None)
        if fixed is not None and getattr(embed, "strict_img_size", False) \
                and tuple(x.shape[-2:]) != tuple(fixed):
            raise ValueError(f"{self.model_name} was built for {tuple(fixed)} inputs, got "
                             f"{tuple(x.shape[-2:])}; pass img_size=... or dynamic_img_size=True "
                             "to create_backbone.")
        ph, pw = embed.patch_size
        if x.shape[-2] % ph or x.shape[-1] % pw:
            raise ValueError(f"{self.model_name} needs height and width divisible by the patch size "
                             f"{(ph, pw)}, got {tuple(x.shape[-2:])}.")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.is_vit:
            self._check_vit_size(x)
            tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens:]
            ph, pw = self.model.patch_embed.patch_size
            h, w = x.shape[-2] // ph, x.shape[-1] // pw
            maps = tokens.transpose(1, 2).reshape(x.shape[0], self.num_features, h, w)
        else:
            maps = self.model.forward_features(x)
            if maps.ndim != 4 or maps.shape[1] != self.num_features:
                raise ValueError(f"{self.model_name} gives features of shape {tuple(maps.shape)}, not "
                                 f"(B, {self.num_features}, h, w); use a CNN or a plain ViT.")
        return torch.relu(maps) if self.relu else maps


def create_backbone(name: str, **kwargs) -> Backbone:
    """Build a backbone by name: ``"small_cnn"`` or ``"timm:<model>"`` (e.g. ``"timm:resnet50"``).

    Keyword arguments go to the backbone: ``width``/``in_chans`` for the small CNN;
    ``pretrained``, ``pretrained_file``, ``reduced_strides`` (ResNets: layer3/layer4 stride 1,
    as in QPM), ``relu`` and any ``timm.create_model`` argument (``img_size`` …) for timm models.
    """
    if not isinstance(name, str):
        raise TypeError(f"Backbone name must be a string, got {type(name).__name__}.")
    if name == "small_cnn":
        return SmallCNN(**kwargs)
    if name.startswith("timm:") and len(name) > 5:
        return TimmBackbone(name[5:], **kwargs)
    raise ValueError(f"Unknown backbone {name!r}: use 'small_cnn' or 'timm:<model name>' "
                     "(e.g. 'timm:resnet50', 'timm:vit_small_patch14_dinov2').")


class Classifier(nn.Module):
    """Backbone → global average pooling → ``head``; ``head`` maps pooled features (B, D) to logits.

    The sparse and binary layers of the later chapters replace ``head`` with their own module.
    """

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise TypeError("Classifier needs a Backbone (see companion.models.create_backbone), "
                            f"got {type(backbone).__name__}.")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}.")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.dropout = nn.Dropout(dropout)
        self.head: nn.Module = nn.Linear(backbone.num_features, self.num_classes)

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(B, K)``, pooled features f ``(B, D)`` and feature maps M ``(B, D, h, w)``."""
        maps = self.backbone.forward_features(x)
        pooled = maps.mean(dim=(2, 3))
        return self.head(self.dropout(pooled)), pooled, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]
