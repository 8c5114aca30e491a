"""VPP's video instance segmenter: a ViT backbone and a light Mask2Former-style query decoder.

The backbone is a plain ViT whose blocks accept a key mask, so that the pruning modules of
:mod:`companion.vpp.pruning` can switch tokens off. The head is a light Mask2Former-style decoder
(learned queries, cross-attention to the tokens, per-query class and mask embedding dotted with a
stride-4 pixel map).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vit import Block, Mlp


def frame_outputs(outputs: dict, index: int) -> dict:
    """Head outputs of sample ``index`` of a batch, as a batch of one (logits, masks, aux)."""
    one = slice(index, index + 1)
    return {"logits": outputs["logits"][one], "masks": outputs["masks"][one],
            "aux": [(logits[one], masks[one]) for logits, masks in outputs["aux"]]}


def patch_linear(images: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv`` (kernel = stride, no padding) on ``images`` (B, C, H, W) as one matrix product
    over the flattened patches: (B, H/k·W/k, out), the patches in raster order. The same numbers
    as the convolution, without its CPU kernel's fixed cost on small inputs."""
    B, C, H, W = images.shape
    k = conv.kernel_size[0]
    patches = images.reshape(B, C, H // k, k, W // k, k).permute(0, 2, 4, 1, 3, 5)
    return F.linear(patches.reshape(B, (H // k) * (W // k), C * k * k),
                    conv.weight.reshape(conv.out_channels, -1), conv.bias)


def _as_patch_linear(conv: nn.Conv2d, size: int) -> bool:
    """Whether ``conv`` on ``size``² inputs is a plain patchify (see :func:`patch_linear`)."""
    k, st = conv.kernel_size, conv.stride
    return k[0] == k[1] == st[0] == st[1] and conv.padding == (0, 0) and size % k[0] == 0 \
        and conv.groups == 1 and conv.dilation == (1, 1)


class DecoderLayer(nn.Module):
    """Query decoder layer: cross-attention to the tokens, self-attention, MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_cross, self.norm_self, self.norm_mlp = (nn.LayerNorm(dim) for _ in range(3))
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = q + attend(self.cross, self.norm_cross(q), memory)
        h = self.norm_self(q)
        q = q + attend(self.self_attn, h, h)
        return q + self.mlp(self.norm_mlp(q))


def attend(attn: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """``attn(q, kv, kv)`` (batch first, no dropout) in a few operations: one projection of
    the queries and one of keys and values together (all three in one for self-attention)."""
    D, heads = q.shape[-1], attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    if q is kv:
        query, key, value = F.linear(q, w, b).chunk(3, -1)
    else:
        query = F.linear(q, w[:D], b[:D])
        key, value = F.linear(kv, w[D:], b[D:]).chunk(2, -1)
    out = F.scaled_dot_product_attention(*(t.unflatten(-1, (heads, D // heads)).transpose(1, 2)
                                           for t in (query, key, value)))
    return attn.out_proj(out.transpose(1, 2).flatten(2))


@dataclass(frozen=True)
class VideoSegmenterConfig:
    """Sizes of :class:`VideoSegmenter` (defaults: a small ViT with 144 tokens; the smoke world's
    model cuts its frames into 6×6 patches, see :class:`~companion.vpp.pretrain.PretrainConfig`)."""

    image_size: int = 96
    patch_size: int = 8
    dim: int = 64
    depth: int = 12
    heads: int = 2
    mlp_ratio: float = 4.0
    num_classes: int = 4
    num_queries: int = 8
    decoder_layers: int = 2
    pixel_dim: int = 32
    layer_scale: bool = False
    # what the backbone's pretrained weights expect of [0, 1] pixels; identity when trained here
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid ** 2


class VideoSegmenter(nn.Module):
    """Per-frame instance segmenter: ViT backbone → query decoder → classes and masks."""

    def __init__(self, config: VideoSegmenterConfig = VideoSegmenterConfig()):
        super().__init__()
        c = self.config = config
        if c.image_size % c.patch_size:
            raise ValueError(f"image_size={c.image_size} must be a multiple of "
                             f"patch_size={c.patch_size}.")
        self.register_buffer("pixel_mean", torch.tensor(c.pixel_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.pixel_std).view(1, 3, 1, 1),
                             persistent=False)
        self.patch_embed = nn.Conv2d(3, c.dim, c.patch_size, stride=c.patch_size)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, c.num_tokens, c.dim))
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio, c.layer_scale)
                                    for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        # Pixel decoder: upsample the tokens to stride 4 and add a shallow convolutional view of
        # the image (a small stand-in for ViT-Adapter's spatial prior module).
        up = c.patch_size // 4
        self.upsample = nn.ConvTranspose2d(c.dim, c.pixel_dim, up, stride=up) if up > 1 else \
            nn.Conv2d(c.dim, c.pixel_dim, 1)
        self.stem = nn.Sequential(nn.Conv2d(3, c.pixel_dim, 4, stride=4), nn.GELU(),
                                  nn.Conv2d(c.pixel_dim, c.pixel_dim, 3, padding=1))
        self._patchify = _as_patch_linear(self.patch_embed, c.image_size)
        self._stem_patchify = _as_patch_linear(self.stem[0], c.image_size)
        self._normalise = c.pixel_mean != (0.0, 0.0, 0.0) or c.pixel_std != (1.0, 1.0, 1.0)
        self.queries = nn.Parameter(0.02 * torch.randn(1, c.num_queries, c.dim))
        self.decoder = nn.ModuleList(DecoderLayer(c.dim, c.heads) for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.class_head = nn.Linear(c.dim, c.num_classes + 1)
        self.mask_head = Mlp(c.dim, c.dim, c.pixel_dim)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a clear error unless ``images`` is a float (B, 3, S, S) batch with the configured S."""
        s = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (s, s):
            raise ValueError(f"Expected frames of shape (B, 3, {s}, {s}), got {tuple(images.shape)}; "
                             "resize the frames to the model's image_size.")
        if not images.is_floating_point():
            raise TypeError(f"Expected float frames in [0, 1], got dtype {images.dtype}; convert "
                            "uint8 frames with frames.float() / 255.")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, D) of [0, 1] frames normalised as the backbone expects, with positions."""
        self.check_images(images)
        x = (images - self.pixel_mean) / self.pixel_std if self._normalise else images
        tokens = patch_linear(x, self.patch_embed) if self._patchify else \
            self.patch_embed(x).flatten(2).transpose(1, 2)
        return tokens + self.pos_embed

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Dense backbone: tokens after the last block (B, N, D), before the final norm."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return x

    def decode(self, tokens: torch.Tensor, images: torch.Tensor) -> dict:
        """Head on the backbone tokens: class logits (B, Q, C+1), mask logits (B, Q, S/4, S/4);
        in training also every earlier decoder layer's pair (``aux``, for the loss)."""
        memory = self.norm(tokens)
        pixels = self.pixel_map(images)
        up = self.upsampled(memory)
        if up.shape[-2:] != pixels.shape[-2:]:  # patch sizes that are not a multiple of 4 (e.g. 6)
            up = F.interpolate(up, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        pixels = pixels + up
        q = self.queries.repeat(tokens.shape[0], 1, 1)
        layers = []
        for i, layer in enumerate(self.decoder):
            q = layer(q, memory)
            if self.training or i == len(self.decoder) - 1:  # the earlier layers feed the aux loss
                h = self.decoder_norm(q)
                layers.append((self.class_head(h),
                               torch.einsum("bqc,bchw->bqhw", self.mask_head(h), pixels)))
        return {"logits": layers[-1][0], "masks": layers[-1][1], "aux": layers[:-1]}

    def pixel_map(self, images: torch.Tensor) -> torch.Tensor:
        """The stem's stride-4 view of the frames (B, pixel_dim, S/4, S/4); its first
        convolution, a patchify, as one matrix product (:func:`patch_linear`)."""
        conv, s = self.stem[0], self.config.image_size
        if not self._stem_patchify:
            return self.stem(images)
        x = patch_linear(images, conv).transpose(1, 2).reshape(-1, conv.out_channels, s // 4, s // 4)
        return self.stem[2](self.stem[1](x))

    def upsampled(self, memory: torch.Tensor) -> torch.Tensor:
        """The normed tokens (B, N, D) upsampled to the pixel decoder (B, pixel_dim, h, w): the
        1×1 or stride-k transposed convolution as one matrix product over the tokens."""
        c, layer = self.config, self.upsample
        B, g = memory.shape[0], c.grid
        if isinstance(layer, nn.Conv2d):
            out = F.linear(memory, layer.weight.flatten(1), layer.bias)
            return out.transpose(1, 2).reshape(B, c.pixel_dim, g, g)
        k = layer.kernel_size[0]
        out = memory @ layer.weight.flatten(1)  # (B, N, pixel_dim·k·k)
        out = out.reshape(B, g, g, c.pixel_dim, k, k).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(B, c.pixel_dim, g * k, g * k) + layer.bias.view(1, -1, 1, 1)

    def forward(self, images: torch.Tensor) -> dict:
        return self.decode(self.forward_tokens(images), images)

    @torch.no_grad()
    def run_clip(self, frames: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
        """Head outputs per frame of a clip (T, 3, H, W) and kept tokens (T, depth, N): all of them."""
        outputs = [self(frames[t:t + 1]) for t in range(frames.shape[0])]
        c = self.config
        return outputs, torch.ones(frames.shape[0], c.depth, c.num_tokens)

    @torch.no_grad()
    def run_batch(self, videos: torch.Tensor) -> tuple[list[list[dict]], torch.Tensor]:
        """``run_clip`` of each clip of ``videos`` (B, T, 3, H, W), every frame in one batch:
        outputs per clip and frame, kept tokens (B, T, depth, N)."""
        B, T = videos.shape[:2]
        out = self(videos.flatten(0, 1))
        c = self.config
        return ([[frame_outputs(out, b * T + t) for t in range(T)] for b in range(B)],
                torch.ones(B, T, c.depth, c.num_tokens))

    def frame_call(self, previous: torch.Tensor, frame: torch.Tensor) -> Callable[[], dict]:
        """A batch-1 call on ``frame`` (1, 3, H, W) to count and time; ``previous`` is unused."""
        self.eval()
        return lambda: self(frame)
