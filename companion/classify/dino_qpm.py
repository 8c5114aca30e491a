"""DINO-QPM: a per-token MLP adapter on a frozen ViT, average pooling, and QPM's binary layer.

The frozen backbone's patch tokens are computed once and cached (:func:`frozen_tokens`); every
stage after that trains on the tokens, with the pipeline's own pieces:

    vit = frozen_vit("timm:vit_small_patch14_dinov2.lvd142m", image_size=224, pretrained=True)
    train = frozen_tokens(vit, data.eval_train, cache_key=token_cache_key(...))
    dense, _ = train_dense_adapter(train, n_classes, recipe)         # CE + 0.5 L_div
    fs = extract_features(dense, train.dataset(), maps=True)
    qpm = assign(fs, n_features=50, per_class=5)                     # QPM with no locality bias
    model, _ = fine_tune_adapter(dense, qpm.layer_, train, recipe)   # CE + L_div + 5 L_fm + 1 L_fv

:func:`image_classifier` puts the frozen ViT back in front, for images.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..features import FeatureSet, extract_features
from ..losses import ExtraLoss, diversity_criterion
from ..models import Backbone, Classifier, create_backbone
from ..models.backbones import TimmBackbone
from ..optim import fused_adamw
from ..runtime import get_profile, seed_everything
from ..train import History, fit
from .finetune import finetune
from .qpm import QPM
from .sparse import SparseLayer

__all__ = ["AdaptedViT", "DinoQPMRecipe", "FrozenViT", "TokenAdapter", "Tokens", "adapter_widths",
           "assign", "concept_object_masks", "cub_object_masks", "fine_tune_adapter",
           "frozen_tokens", "frozen_vit", "image_classifier", "sparsity_losses", "token_cache_key",
           "train_dense_adapter"]

DINOV2 = "timm:vit_small_patch14_dinov2.lvd142m"


class FrozenViT(Backbone):
    """A timm ViT whose patch tokens (after the final norm) are the maps; frozen and always in eval.

    ``requires_grad`` is off for every weight and the forward pass runs without autograd, so no
    gradient can reach it. ``forward_all`` returns ``(cls, cls, tokens)``: through
    :func:`companion.features.extract_features` the CLS token is cached as ``pooled`` and the
    patch tokens as ``maps``.
    """

    def __init__(self, vit: TimmBackbone):
        super().__init__()
        if not isinstance(vit, TimmBackbone) or not vit.is_vit:
            raise TypeError(f"FrozenViT needs a timm ViT backbone, got {type(vit).__name__}"
                            f"{'' if not isinstance(vit, TimmBackbone) else ' of a CNN'}.")
        self.vit = vit
        self.vit.relu = False
        self.in_chans, self.num_features = vit.in_chans, vit.num_features
        self.patch_size = tuple(vit.model.patch_embed.patch_size)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenViT:
        return super().train(False)

    def forward_tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The CLS token (B, D) and the patch tokens as a grid (B, D, h, w)."""
        self.check_input(x)
        self.vit._check_vit_size(x)
        with torch.no_grad():
            out = self.vit.model.forward_features(x)
        (ph, pw), n_prefix = self.patch_size, self.vit.model.num_prefix_tokens
        h, w = x.shape[-2] // ph, x.shape[-1] // pw
        tokens = out[:, n_prefix:].transpose(1, 2).reshape(len(x), self.num_features, h, w)
        return out[:, 0], tokens

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_tokens(x)[1]

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cls, tokens = self.forward_tokens(x)
        return cls, cls, tokens


def frozen_vit(name: str = DINOV2, *, image_size: int = 224, pretrained: bool = True,
               **kwargs: Any) -> FrozenViT:
    """A frozen timm ViT for ``image_size`` inputs (``pretrained`` downloads only in the full world)."""
    not_vit = ValueError(f"{name!r} is not a ViT: DINO-QPM needs patch tokens (use a timm ViT, e.g. "
                         f"{DINOV2!r}).")
    try:
        backbone = create_backbone(name, pretrained=pretrained, img_size=int(image_size),
                                   relu=False, **kwargs)
    except TypeError as err:  # CNNs take no img_size
        if "img_size" in str(err):
            raise not_vit from err
        raise
    if not isinstance(backbone, TimmBackbone) or not backbone.is_vit:
        raise not_vit
    return FrozenViT(backbone)


class TokenAdapter(Backbone):
    """The per-token MLP: (Linear → BatchNorm → ReLU) per layer, on tokens (B, D, h, w).

    A 1×1 convolution is a linear layer applied to every token; BatchNorm2d normalises each
    channel over all tokens of the batch, as DINO-QPM's per-token BatchNorm does. The ReLU after
    the last layer makes the feature maps non-negative. ``rows=True`` computes the convolutions
    as matrix products on one row per token (the same maps up to rounding, several times faster
    on the CPU); ``rows=False`` runs them as convolutions.
    """

    def __init__(self, in_dim: int, widths: tuple[int, ...], *, rows: bool = True):
        super().__init__()
        self.rows = bool(rows)
        if int(in_dim) < 1 or not widths or min(int(w) for w in widths) < 1:
            raise ValueError(f"in_dim and every width must be positive, got {in_dim} and {widths}.")
        self.in_chans, self.num_features = int(in_dim), int(widths[-1])
        self.widths = tuple(int(w) for w in widths)
        layers, c_in = [], self.in_chans
        for c in self.widths:
            layers += [nn.Conv2d(c_in, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.mlp = nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if not self.rows:
            return self.mlp(x)
        B, _, h, w = x.shape
        # one row per token: each 1×1 convolution as one matrix product (several times faster
        # than the convolution on the CPU for few tokens), BatchNorm2d on rows of shape (C, 1, 1)
        t = x.permute(0, 2, 3, 1).reshape(B * h * w, -1)
        for conv, norm, relu in zip(self.mlp[0::3], self.mlp[1::3], self.mlp[2::3], strict=True):
            t = relu(norm(F.linear(t, conv.weight.flatten(1))[:, :, None, None])).flatten(1)
        return t.view(B, h, w, -1).permute(0, 3, 1, 2).contiguous()


def adapter_widths(hidden: int, n_features: int, n_layers: int = 4) -> tuple[int, ...]:
    """The adapter's widths: ``n_layers - 1`` hidden layers, then ``n_features`` (the paper: 2048, 512)."""
    if int(n_layers) < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}.")
    return (int(hidden),) * (int(n_layers) - 1) + (int(n_features),)


class AdaptedViT(Backbone):
    """Frozen ViT → adapter: DINO-QPM's feature maps computed from images."""

    def __init__(self, vit: FrozenViT, adapter: TokenAdapter):
        super().__init__()
        if adapter.in_chans != vit.num_features:
            raise ValueError(f"the adapter takes {adapter.in_chans}-d tokens but the ViT gives "
                             f"{vit.num_features}-d ones.")
        self.vit, self.adapter = vit, adapter
        self.in_chans, self.num_features = vit.in_chans, adapter.num_features

    def forward_features(self, x: Tensor) -> Tensor:
        return self.adapter(self.vit.forward_features(x))


def image_classifier(vit: FrozenViT, model: Classifier) -> Classifier:
    """The token-level ``model`` (adapter + head) with the frozen ViT in front: it takes images."""
    if not isinstance(model.backbone, TokenAdapter):
        raise TypeError(f"image_classifier needs a Classifier over a TokenAdapter, got one over "
                        f"{type(model.backbone).__name__}.")
    out = Classifier(AdaptedViT(vit, model.backbone), model.num_classes)
    out.head, out.dropout = model.head, model.dropout
    return out


@dataclass(frozen=True)
class Tokens:
    """Frozen tokens of N images: CLS ``(N, D)``, patch tokens ``maps (N, D, h, w)``, labels."""

    cls: Tensor
    maps: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return self.maps.shape[1]

    @property
    def pooled(self) -> Tensor:
        """The average-pooled patch tokens (N, D)."""
        return self.maps.mean(dim=(2, 3))

    def dataset(self) -> TensorDataset:
        """``(tokens, label)`` pairs: the training data of the adapter."""
        return TensorDataset(self.maps, self.labels)

    def features(self) -> FeatureSet:
        """The raw tokens as a FeatureSet (pooled = average of the patch tokens)."""
        return FeatureSet(self.pooled, self.labels, self.maps)


def token_cache_key(backbone: str, image_size: int, split: str, data_name: str = "") -> str:
    """A cache file name naming the backbone, image size, data and split (the fingerprint checks the rest)."""
    raw = f"tokens_{backbone.removeprefix('timm:')}_{int(image_size)}px_{data_name}_{split}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def frozen_tokens(vit: FrozenViT, data: Any, *, cache_key: str | None = None,
                  batch_size: int = 256, progress: bool = True, **kwargs: Any) -> Tokens:
    """The frozen CLS and patch tokens of every image in ``data``, cached under ``cache_key``.

    The cache is keyed by a fingerprint of the ViT's weights and of sampled images (with their
    size), so a file written by another backbone or for another image size is never reused.
    """
    if not isinstance(vit, FrozenViT):
        raise TypeError(f"frozen_tokens needs a FrozenViT (see frozen_vit), got {type(vit).__name__}.")
    fs = extract_features(vit, data, maps=True, cache_key=cache_key, batch_size=batch_size,
                          progress=progress, **kwargs)
    return Tokens(cls=fs.pooled, maps=fs.maps, labels=fs.labels)


@dataclass(frozen=True)
class DinoQPMRecipe:
    """The adapter's size and DINO-QPM's two training stages (``configs/models/qpm/dinov2.yaml``).

    Dense: AdamW, lr 1e-3, weight decay 7e-4, batch 32, dropout 0.2, CE + 0.5 L_div. Fine-tune:
    lr 5e-3, weight decay 8e-4, batch 16, no dropout, CE + 1 L_div + 5 L_fm + 1 L_fv. The paper
    uses schedule-free AdamW; we use AdamW with a cosine schedule. ``fast`` trains with fused
    AdamW and the adapter's rows of matrix products (the same steps up to rounding, about twice as
    fast on the CPU); the smoke world keeps the plain AdamW and convolutions its pinned numbers
    were made with (training amplifies rounding into other numbers in the last digits).
    """

    hidden: int = 2048
    n_layers: int = 4
    n_features: int = 512
    dense_epochs: int = 25
    dense_lr: float = 1e-3
    dense_weight_decay: float = 7e-4
    dense_batch: int = 32
    dense_dropout: float = 0.2
    dense_beta: float = 0.5
    ft_epochs: int = 25
    ft_lr: float = 5e-3
    ft_weight_decay: float = 8e-4
    ft_batch: int = 16
    ft_beta: float = 1.0
    map_l1: float = 5.0
    vector_l1: float = 1.0
    seed: int = 0
    fast: bool = True

    @classmethod
    def for_profile(cls, **overrides: Any) -> DinoQPMRecipe:
        """The paper's recipe in the full world; a small adapter and short schedules in the smoke world."""
        p = get_profile()
        base = dict(hidden=p.pick(256, 2048), n_features=p.pick(64, 512),
                    dense_epochs=p.pick(12, 25), ft_epochs=p.pick(6, 25),
                    dense_batch=p.pick(64, 32), ft_batch=p.pick(32, 16),
                    ft_lr=p.pick(2e-3, 5e-3), fast=p.pick(False, True))
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def optimizer(self) -> Any:
        """What ``fit`` trains with: fused AdamW when ``fast``, else the plain one."""
        return fused_adamw if self.fast else "adamw"

    @property
    def widths(self) -> tuple[int, ...]:
        return adapter_widths(self.hidden, self.n_features, self.n_layers)


def sparsity_losses(map_weight: float = 5.0, vector_weight: float = 1.0) -> dict[str, ExtraLoss]:
    """DINO-QPM's sparsity terms on the selected features: λ_fm·mean|F| over maps, λ_fv·mean|f| pooled."""
    def map_l1(maps: Tensor, logits: Tensor, weight: Tensor, y: Tensor) -> Tensor:
        return map_weight * maps.abs().mean()

    def vector_l1(maps: Tensor, logits: Tensor, weight: Tensor, y: Tensor) -> Tensor:
        return vector_weight * maps.mean(dim=(2, 3)).abs().mean()

    return {"map_l1": map_l1, "vector_l1": vector_l1}


def train_dense_adapter(tokens: Tokens, n_classes: int, recipe: DinoQPMRecipe | None = None, *,
                        device: str | torch.device | None = None, progress: bool = True
                        ) -> tuple[Classifier, History]:
    """The dense stage: adapter + linear head over all its features, trained on the tokens."""
    recipe = DinoQPMRecipe.for_profile() if recipe is None else recipe
    seed_everything(recipe.seed)
    model = Classifier(TokenAdapter(tokens.dim, recipe.widths, rows=recipe.fast), n_classes,
                       dropout=recipe.dense_dropout)
    history = fit(model, tokens.dataset(), epochs=recipe.dense_epochs,
                  loss=diversity_criterion(recipe.dense_beta), optimizer=recipe.optimizer,
                  lr=recipe.dense_lr, weight_decay=recipe.dense_weight_decay,
                  batch_size=recipe.dense_batch, scheduler="cosine", seed=recipe.seed,
                  device=device, progress=progress, desc="dense adapter")
    return model.eval(), history


def assign(features: FeatureSet, *, n_features: int, per_class: int, **qpm_options: Any) -> QPM:
    """QPM's binary assignment on the pooled features, with no locality bias (the maps are left out)."""
    return QPM(n_features, per_class, **qpm_options).fit((features.pooled, features.labels))


def fine_tune_adapter(dense: Classifier, layer: SparseLayer, tokens: Tokens,
                      recipe: DinoQPMRecipe | None = None, *, sparsity: bool = True,
                      device: str | torch.device | None = None, progress: bool = True
                      ) -> tuple[Classifier, History]:
    """A copy of ``dense`` fine-tuned under the frozen ``layer``: CE + L_div (+ the sparsity losses)."""
    recipe = DinoQPMRecipe.for_profile() if recipe is None else recipe
    model = copy.deepcopy(dense).train()
    extra = sparsity_losses(recipe.map_l1, recipe.vector_l1) if sparsity else None
    history = finetune(model, copy.deepcopy(layer), tokens.dataset(), epochs=recipe.ft_epochs,
                       lr=recipe.ft_lr, beta=recipe.ft_beta, weight_decay=recipe.ft_weight_decay,
                       optimizer=recipe.optimizer, scheduler="cosine", dropout=0.0,
                       batch_size=recipe.ft_batch, seed=recipe.seed, device=device,
                       progress=progress, extra_losses=extra)
    return model.eval(), history



def concept_object_masks(parts: Any) -> Tensor:
    """Object masks (N, H, W) of concept-parts images: the pixels of the image's own class parts.

    Distractor parts and the background are outside the object.
    """
    own = parts.class_parts[parts.labels]  # (N, P): the parts of each image's class
    part_map = parts.part_map.long()
    inside = torch.zeros(part_map.shape, dtype=torch.bool)
    for p in range(parts.n_parts):
        inside |= (part_map == p + 1) & own[:, p, None, None]
    return inside


def cub_object_masks(root: Any = None, *, image_size: int = 224, download: bool = True,
                     progress: bool = True) -> Tensor:
    """CUB-200-2011 test segmentations (N, S, S) in [0, 1], resized and cropped as the test images."""
    from torchvision import transforms as T
    from tqdm.auto import tqdm

    from ..data.cub import CUB200
    from ..runtime import cache_dir

    root = cache_dir("cub") if root is None else root
    resize = round(int(image_size) * 8 / 7)  # as companion.data.transforms.image_transforms
    geometry = T.Compose([T.Resize(resize), T.CenterCrop(int(image_size)), T.ToTensor()])
    test = CUB200(root, "test", segmentations=True, download=download, mask_transform=geometry)
    return torch.stack([test.segmentation(i)[0]  # (1, S, S): the mask alone, no image decoded
                        for i in tqdm(range(len(test)), desc="masks", disable=not progress)])
