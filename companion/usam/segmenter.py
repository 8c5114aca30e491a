"""UncertainSAM's promptable segmenter: SAM's structure at CPU size, in several sizes.

Image encoder (a small CNN, wider and deeper in larger sizes) → image embedding
(B, D, h, w); prompt encoder (random-Fourier positional encoding of (x, y) clicks + a label
embedding); mask decoder (a two-way transformer over the output tokens [IoU token, 3 mask tokens]
and the prompt tokens). Mask token j makes mask j through one hypernetwork MLP shared by the three
tokens (SAM has one per token; shared, whatever makes mask j differ from mask k must be in token j,
where the USAM heads read it); the IoU token makes the three predicted IoUs ("SamScore"). Every
size shares the token width D, as SAM 2's sizes share 256, so one USAM head fits all of them.
SAM's fourth (single-mask) token is left out: every prompt gets three masks. The large size also
has a third decoder block: with two, it drew the levels of a concentric target no better than the
small one, so their gap vanished where the answers are finest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import resolve_device

NOT_A_POINT = -1


@dataclass(frozen=True)
class PromptableSegmenterConfig:
    """Hyper-parameters of one size; ``embed_dim`` (D) is the token width shared by all sizes."""

    name: str
    width: int          # channels of the image encoder
    depth: int          # residual blocks per encoder stage
    embed_dim: int = 32
    image_size: int = 32
    num_heads: int = 4
    decoder_depth: int = 2
    num_masks: int = 3


SIZES: dict[str, PromptableSegmenterConfig] = {
    "tiny": PromptableSegmenterConfig("tiny", width=8, depth=0),
    "small": PromptableSegmenterConfig("small", width=16, depth=1),
    "large": PromptableSegmenterConfig("large", width=32, depth=2, decoder_depth=3),
}


@dataclass(frozen=True)
class SegmenterOutput:
    """Three masks per prompt, their predicted IoUs and the decoder tokens that made them."""

    mask_logits: torch.Tensor  # (B, 3, S, S)
    scores: torch.Tensor       # (B, 3) predicted IoU ("SamScore"), in [0, 1]
    iou_token: torch.Tensor    # (B, D) IoU token after the decoder
    mask_tokens: torch.Tensor  # (B, 3, D) mask token j made mask j


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x))


class ImageEncoder(nn.Module):
    """CNN with stride 4 and a neck to D channels: (B, 3, S, S) → (B, D, S/4, S/4)."""

    def __init__(self, width: int, depth: int, embed_dim: int):
        super().__init__()

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(c_out), nn.GELU(), *[ResidualBlock(c_out) for _ in range(depth)]]

        self.body = nn.Sequential(*stage(3, width), *stage(width, 2 * width))
        self.neck = nn.Sequential(nn.Conv2d(2 * width, embed_dim, 1), LayerNorm2d(embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))


class PositionalEncoding(nn.Module):
    """Random-Fourier features of (x, y) in [0, 1]² (SAM's ``PositionEmbeddingRandom``)."""

    def __init__(self, embed_dim: int, scale: float = 1.0):
        super().__init__()
        self.register_buffer("gaussian", scale * torch.randn(2, embed_dim // 2))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """(…, 2) coordinates in [0, 1] → (…, D) features."""
        proj = 2 * math.pi * (2 * coords - 1) @ self.gaussian
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """Dense encoding of an h×w grid of cell centres, shape (D, h, w)."""
        ys = (torch.arange(h, device=self.gaussian.device) + 0.5) / h
        xs = (torch.arange(w, device=self.gaussian.device) + 0.5) / w
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return self.encode(coords).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Clicks → sparse prompt tokens: positional encoding + a foreground / background embedding."""

    def __init__(self, embed_dim: int, image_size: int):
        super().__init__()
        self.image_size = image_size
        self.pe = PositionalEncoding(embed_dim)
        self.label_embed = nn.Embedding(2, embed_dim)     # 0 background, 1 foreground
        self.not_a_point = nn.Parameter(torch.zeros(embed_dim))
        self.no_mask = nn.Parameter(torch.zeros(embed_dim))  # dense embedding without a mask prompt

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) pixel (x, y), (B, K) labels in {−1, 0, 1} → (B, K, D)."""
        tokens = self.pe.encode((points + 0.5) / self.image_size)
        tokens = tokens + self.label_embed(labels.clamp(min=0))
        pad = (labels == NOT_A_POINT)[..., None]
        return torch.where(pad, self.not_a_point.expand_as(tokens), tokens)


class Attention(nn.Module):
    """Multi-head attention with an optional down-projection of the inner width (SAM's)."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        self.num_heads = num_heads
        self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def split(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        q, k, v = split(self.q(q)), split(self.k(k)), split(self.v(v))
        # explicit softmax(QKᵀ/√d)V: faster than the fused kernel at these tiny head widths on CPU
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = attn @ v
        return self.out(out.transpose(1, 2).flatten(2))


class TwoWayBlock(nn.Module):
    """Tokens self-attend, attend to the image, pass an MLP; then the image attends to the tokens."""

    def __init__(self, dim: int, num_heads: int, skip_first_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.cross_token_to_image = Attention(dim, num_heads, downsample=2)
        self.cross_image_to_token = Attention(dim, num_heads, downsample=2)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.skip_first_pe = skip_first_pe

    def forward(self, tokens, image, token_pe, image_pe):
        if self.skip_first_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norms[0](tokens)
        tokens = self.norms[1](tokens + self.cross_token_to_image(
            tokens + token_pe, image + image_pe, image))
        tokens = self.norms[2](tokens + self.mlp(tokens))
        image = self.norms[3](image + self.cross_image_to_token(
            image + image_pe, tokens + token_pe, tokens))
        return tokens, image


class MaskDecoder(nn.Module):
    """SAM's mask decoder: output tokens [IoU, mask₁..mask₃] + prompt tokens → masks and IoUs."""

    def __init__(self, dim: int, num_heads: int, depth: int, num_masks: int):
        super().__init__()
        self.num_masks = num_masks
        # unit-scale like SAM's nn.Embedding, so the tokens start apart and keep their identity
        self.iou_token = nn.Parameter(torch.randn(1, dim))
        self.mask_tokens = nn.Parameter(torch.randn(num_masks, dim))
        self.blocks = nn.ModuleList(TwoWayBlock(dim, num_heads, skip_first_pe=(i == 0))
                                    for i in range(depth))
        self.final_attn = Attention(dim, num_heads, downsample=2)
        self.final_norm = nn.LayerNorm(dim)
        self.upscale = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU())
        self.hypernet = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                                      nn.Linear(dim, dim // 8))
        self.iou_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim),
                                      nn.ReLU(), nn.Linear(dim, num_masks))

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, prompt: torch.Tensor,
                dense: torch.Tensor) -> SegmenterOutput:
        b, d, h, w = image.shape
        output_tokens = torch.cat([self.iou_token, self.mask_tokens]).expand(b, -1, -1)
        token_pe = torch.cat([output_tokens, prompt], dim=1)
        tokens = token_pe
        src = (image + dense[None, :, None, None]).flatten(2).transpose(1, 2)
        pos = image_pe.flatten(1).transpose(0, 1)[None].expand(b, -1, -1)
        for block in self.blocks:
            tokens, src = block(tokens, src, token_pe, pos)
        tokens = self.final_norm(tokens + self.final_attn(tokens + token_pe, src + pos, src))
        iou_token, mask_tokens = tokens[:, 0], tokens[:, 1:1 + self.num_masks]
        up = self.upscale(src.transpose(1, 2).reshape(b, d, h, w))
        hyper = self.hypernet(mask_tokens)
        logits = torch.einsum("bmc,bchw->bmhw", hyper, up)
        return SegmenterOutput(logits, torch.sigmoid(self.iou_head(iou_token)), iou_token,
                               mask_tokens)


class PromptableSegmenter(nn.Module):
    """Image encoder + prompt encoder + two-way mask decoder; three masks per click prompt."""

    def __init__(self, config: PromptableSegmenterConfig):
        super().__init__()
        if config.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {config.image_size}.")
        if config.embed_dim % 8 or config.embed_dim % config.num_heads:
            raise ValueError(f"embed_dim must be a multiple of 8 and of num_heads, got "
                             f"{config.embed_dim}.")
        self.config = config
        self.image_encoder = ImageEncoder(config.width, config.depth, config.embed_dim)
        self.prompt_encoder = PromptEncoder(config.embed_dim, config.image_size)
        self.mask_decoder = MaskDecoder(config.embed_dim, config.num_heads, config.decoder_depth,
                                        config.num_masks)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 1] → (B, D, S/4, S/4) image embedding."""
        s = self.image_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (s, s):
            raise ValueError(f"images must have shape (B, 3, {s}, {s}), got "
                             f"{tuple(images.shape)}; resize them to the segmenter's "
                             f"image_size={s} first.")
        if not images.is_floating_point():
            raise TypeError(f"images must be float tensors in [0, 1], got dtype {images.dtype}; "
                            "convert uint8 images with images.float() / 255.")
        return self.image_encoder(images)

    def decode(self, embedding: torch.Tensor, points: torch.Tensor,
               labels: torch.Tensor | None = None) -> SegmenterOutput:
        """Masks, scores and tokens for click ``points`` (B, K, 2) on image ``embedding``.

        ``labels`` (B, K): 1 foreground, 0 background, −1 padding; ``None`` means all foreground.
        """
        points, labels = self._check_prompt(points, labels, len(embedding))
        prompt = self.prompt_encoder(points, labels)
        h, w = embedding.shape[-2:]
        return self.mask_decoder(embedding, self.prompt_encoder.pe.grid(h, w), prompt,
                                 self.prompt_encoder.no_mask)

    def forward(self, images: torch.Tensor, points: torch.Tensor,
                labels: torch.Tensor | None = None) -> SegmenterOutput:
        """Segment ``images`` (B, 3, S, S) from click ``points`` (B, K, 2) in (x, y) pixels."""
        return self.decode(self.embed_image(images), points, labels)

    def _check_prompt(self, points, labels, batch: int):
        if not isinstance(points, torch.Tensor) or points.ndim != 3 or points.shape[-1] != 2:
            raise ValueError(f"points must be a tensor of shape (B, K, 2) holding (x, y) pixel "
                             f"coordinates, got {getattr(points, 'shape', type(points))}.")
        if points.shape[0] != batch:
            raise ValueError(f"got {points.shape[0]} prompts for {batch} images: give one prompt "
                             "(a (K, 2) set of clicks) per image.")
        if labels is None:
            labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
        if labels.shape != points.shape[:2]:
            raise ValueError(f"labels must have shape {tuple(points.shape[:2])} (one per click), "
                             f"got {tuple(labels.shape)}.")
        labels = labels.long()
        real = labels != NOT_A_POINT
        if points.shape[1] == 0:
            raise ValueError("the prompt set is empty (points of shape (B, 0, 2)): give every "
                             "image at least one click, e.g. the centre click of "
                             "companion.data.prompts.centre_click.")
        if not real.any(1).all():
            raise ValueError("every prompt needs at least one click that is not padding (−1): "
                             "label at least one click 1 (foreground) or 0 (background).")
        s = self.image_size
        outside = real & ((points < 0) | (points > s - 1)).any(-1)
        if outside.any():
            bad = points[outside][0].tolist()
            raise ValueError(f"{int(outside.sum())} click(s) lie outside the {s}×{s} image "
                             f"(first: (x, y) = {bad}); clicks are pixel coordinates in [0, {s - 1}].")
        return points.float(), labels


def create_segmenter(size: str | PromptableSegmenterConfig = "tiny", *, device=None,
                     **overrides) -> PromptableSegmenter:
    """A fresh segmenter of a named size (``tiny``, ``small``, ``large``) or of a given config."""
    if isinstance(size, PromptableSegmenterConfig):
        config = size
    elif size in SIZES:
        config = SIZES[size]
    else:
        raise ValueError(f"Unknown segmenter size {size!r}: choose one of {', '.join(SIZES)} or "
                         "pass a PromptableSegmenterConfig.")
    if overrides:
        config = PromptableSegmenterConfig(**{**asdict(config), **overrides})
    return PromptableSegmenter(config).to(resolve_device(device))
