"""VPP with a pretrained backbone: a timm ViT's weights ported into :class:`VideoSegmenter`."""

from __future__ import annotations

import torch
from torch import nn

from ..models.normalization import pretrained_normalization
from .segmenter import VideoSegmenter, VideoSegmenterConfig


def from_timm(model: str | nn.Module, image_size: int, num_classes: int, pretrained: bool = True,
              **head: int) -> VideoSegmenter:
    """A :class:`VideoSegmenter` whose backbone carries the weights of a timm ViT.

    ``model`` is a timm model name (e.g. ``"vit_small_patch14_dinov2.lvd142m"``, downloaded when
    ``pretrained``) or a timm ``VisionTransformer``. The patch embedding, the blocks (with layer
    scale) and the final norm are copied; the position embedding of the patches is resampled to the
    new grid; class and register tokens are dropped, because pruning works on patch tokens only.
    The head (``num_queries``, ``decoder_layers``, ``pixel_dim``) starts from scratch. We build our
    own blocks rather than use timm's so that every block takes a key mask. Frames are normalised
    with the mean and std of the model's own pretrained config.
    """
    import timm
    from timm.layers import resample_abs_pos_embed

    vit = timm.create_model(model, pretrained=pretrained, num_classes=0) if isinstance(model, str) else model
    first = vit.blocks[0]
    mean, std = pretrained_normalization(vit)
    patch = vit.patch_embed.patch_size[0]
    config = VideoSegmenterConfig(image_size=image_size, patch_size=patch, dim=vit.embed_dim,
                                  depth=len(vit.blocks), heads=first.attn.num_heads,
                                  mlp_ratio=first.mlp.fc1.out_features / vit.embed_dim,
                                  num_classes=num_classes, layer_scale=hasattr(first.ls1, "gamma"),
                                  pixel_mean=mean, pixel_std=std, **head)
    seg = VideoSegmenter(config)
    with torch.no_grad():
        seg.patch_embed.load_state_dict(vit.patch_embed.proj.state_dict())
        prefix = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
        old = vit.patch_embed.grid_size
        pos = resample_abs_pos_embed(vit.pos_embed, [config.grid, config.grid], list(old),
                                     num_prefix_tokens=prefix)
        seg.pos_embed.copy_(pos[:, prefix:])
        for mine, theirs in zip(seg.blocks, vit.blocks, strict=True):
            for name in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"):
                mine.get_submodule(name).load_state_dict(theirs.get_submodule(name).state_dict())
            mine.attn.qkv.weight.copy_(theirs.attn.qkv.weight)
            mine.attn.qkv.bias.copy_(theirs.attn.qkv.bias if theirs.attn.qkv.bias is not None else 0)
            if config.layer_scale:
                mine.ls1.copy_(theirs.ls1.gamma)
                mine.ls2.copy_(theirs.ls2.gamma)
        seg.norm.load_state_dict(vit.norm.state_dict())
    return seg
