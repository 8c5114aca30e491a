"""A small pre-norm ViT video instance segmenter: query mask head, Hungarian loss, IoU tracker.

The backbone is a plain ViT whose blocks accept a key mask, so that the pruning modules of
:mod:`companion.models.vpp` can switch tokens off. The head is a light Mask2Former-style decoder
(learned queries, cross-attention to the tokens, per-query class and mask embedding dotted with a
stride-4 pixel map). Objects are linked across frames by a mask-IoU tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

# Loss weights of the Mask2Former head used by VPP/ROVIS: class 2, mask BCE 5, Dice 5.
CLASS_WEIGHT, BCE_WEIGHT, DICE_WEIGHT, NO_OBJECT_WEIGHT = 2.0, 5.0, 5.0, 0.1


class Attention(nn.Module):
    """Multi-head self-attention with an optional key mask and additive bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}.")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if key_mask is not None:  # (B, N) True = the key takes part
            mask = key_mask[:, None, None, :]
        if attn_bias is not None:  # (B, N) additive bias per key (token merging's log-size)
            bias = attn_bias[:, None, None, :].to(q.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """The attention keys averaged over heads (B, N, D/heads)."""
        B, N, D = x.shape
        k = F.linear(x, self.qkv.weight[D:2 * D], self.qkv.bias[D:2 * D])
        return k.reshape(B, N, self.heads, D // self.heads).mean(2)


class Mlp(nn.Module):
    """Two linear layers with GELU."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block x + γ₁·Attn(LN(x)), then x + γ₂·MLP(LN(x)) (timm names)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, layer_scale: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls1 = nn.Parameter(torch.ones(dim)) if layer_scale else None
        self.ls2 = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def attend(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
               attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The attention half: x + γ₁·Attn(LN(x))."""
        y = self.attn(self.norm1(x), key_mask, attn_bias)
        return x + (y if self.ls1 is None else self.ls1 * y)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP half: x + γ₂·MLP(LN(x))."""
        y = self.mlp(self.norm2(x))
        return x + (y if self.ls2 is None else self.ls2 * y)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(self.attend(x, key_mask))


class DecoderLayer(nn.Module):
    """Query decoder layer: cross-attention to the tokens, self-attention, MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_cross, self.norm_self, self.norm_mlp = (nn.LayerNorm(dim) for _ in range(3))
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h = self.norm_cross(q)
        q = q + self.cross(h, memory, memory, need_weights=False)[0]
        h = self.norm_self(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


@dataclass(frozen=True)
class SegmenterConfig:
    """Sizes of :class:`VideoSegmenter` (defaults: the smoke world's ViT with 144 tokens)."""

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

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid ** 2


class VideoSegmenter(nn.Module):
    """Per-frame instance segmenter: ViT backbone → query decoder → classes and masks."""

    def __init__(self, config: SegmenterConfig = SegmenterConfig()):
        super().__init__()
        c = self.config = config
        if c.image_size % c.patch_size:
            raise ValueError(f"image_size={c.image_size} must be a multiple of "
                             f"patch_size={c.patch_size}.")
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
        self.queries = nn.Parameter(0.02 * torch.randn(1, c.num_queries, c.dim))
        self.decoder = nn.ModuleList(DecoderLayer(c.dim, c.heads) for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.class_head = nn.Linear(c.dim, c.num_classes + 1)
        self.mask_head = Mlp(c.dim, c.dim, c.pixel_dim)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a clear error unless ``images`` is (B, 3, S, S) with the configured size S."""
        s = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (s, s):
            raise ValueError(f"Expected frames of shape (B, 3, {s}, {s}), got {tuple(images.shape)}; "
                             "resize the frames to the model's image_size.")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with position embedding (B, N, D)."""
        self.check_images(images)
        return self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Dense backbone: tokens after the last block (B, N, D), before the final norm."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return x

    def decode(self, tokens: torch.Tensor, images: torch.Tensor) -> dict:
        """Head on the backbone tokens: class logits (B, Q, C+1), mask logits (B, Q, S/4, S/4)."""
        c = self.config
        memory = self.norm(tokens)
        fmap = memory.transpose(1, 2).reshape(-1, c.dim, c.grid, c.grid)
        pixels = self.stem(images)
        up = self.upsample(fmap)
        if up.shape[-2:] != pixels.shape[-2:]:  # patch sizes that are not a multiple of 4 (e.g. 14)
            up = F.interpolate(up, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        pixels = pixels + up
        q = self.queries.repeat(tokens.shape[0], 1, 1)
        layers = []
        for layer in self.decoder:
            q = layer(q, memory)
            h = self.decoder_norm(q)
            layers.append((self.class_head(h), torch.einsum("bqc,bchw->bqhw", self.mask_head(h), pixels)))
        return {"logits": layers[-1][0], "masks": layers[-1][1], "aux": layers[:-1]}

    def forward(self, images: torch.Tensor) -> dict:
        return self.decode(self.forward_tokens(images), images)


def _pairwise_mask_costs(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE and Dice loss between every predicted (Q, P) and target (G, P) mask."""
    p = pred.sigmoid()
    pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
    bce = (pos @ target.T + neg @ (1 - target).T) / pred.shape[1]
    dice = 1 - (2 * p @ target.T + 1) / (p.sum(1)[:, None] + target.sum(1)[None, :] + 1)
    return bce, dice


def hungarian_match(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Optimal query → object assignment for one frame (cost 2·class + 5·BCE + 5·Dice).

    ``logits`` (Q, C+1), ``masks`` (Q, P) logits, ``labels`` (G,), ``target_masks`` (G, P) in [0, 1].
    Returns (query indices, object indices).
    """
    if labels.numel() == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    with torch.no_grad():
        bce, dice = _pairwise_mask_costs(masks.float(), target_masks.float())
        cost = -CLASS_WEIGHT * logits.float().softmax(-1)[:, labels] + BCE_WEIGHT * bce + DICE_WEIGHT * dice
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols


def frame_targets(masks: torch.Tensor, labels: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per frame (labels (G,), masks (G, size·size) in [0, 1]) of the objects visible in it.

    ``masks`` (B, K, H, W) bool, ``labels`` (B, K) with -1 for empty slots.
    """
    small = F.adaptive_avg_pool2d(masks.float(), size).flatten(2)
    out = []
    for b in range(masks.shape[0]):
        keep = (labels[b] >= 0) & masks[b].flatten(1).any(1)
        out.append((labels[b][keep], small[b][keep]))
    return out


def segmentation_loss(outputs: dict, masks: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mask2Former loss on every decoder layer: 2·CE (no-object 0.1) + 5·BCE + 5·Dice, matched."""
    logits, pred = outputs["logits"], outputs["masks"]
    targets = frame_targets(masks.to(pred.device), labels.to(pred.device), pred.shape[-1])
    num_classes = logits.shape[-1] - 1
    weight = torch.ones(num_classes + 1, device=logits.device)
    weight[-1] = NO_OBJECT_WEIGHT
    n_obj = max(1, sum(len(t[0]) for t in targets))
    parts = {"class": 0.0, "bce": 0.0, "dice": 0.0}
    total = logits.new_zeros(())
    for lg, mk in [*outputs["aux"], (logits, pred)]:
        mk = mk.flatten(2)
        cls_target = torch.full(lg.shape[:2], num_classes, dtype=torch.long, device=lg.device)
        matched_pred, matched_true = [], []
        for b, (lab, tm) in enumerate(targets):
            rows, cols = hungarian_match(lg[b], mk[b], lab, tm)
            cls_target[b, rows] = lab[cols]
            matched_pred.append(mk[b, rows]), matched_true.append(tm[cols])
        ce = F.cross_entropy(lg.flatten(0, 1), cls_target.flatten(), weight=weight)
        mp, mt = torch.cat(matched_pred), torch.cat(matched_true)
        bce = F.binary_cross_entropy_with_logits(mp, mt, reduction="none").mean(1).sum() / n_obj
        p = mp.sigmoid()
        dice = (1 - (2 * (p * mt).sum(1) + 1) / (p.sum(1) + mt.sum(1) + 1)).sum() / n_obj
        total = total + CLASS_WEIGHT * ce + BCE_WEIGHT * bce + DICE_WEIGHT * dice
        parts = {"class": ce.item(), "bce": bce.item(), "dice": dice.item()}
    return total, parts


@dataclass(frozen=True)
class FramePrediction:
    """Detections in one frame: ``masks`` (n, H, W) bool, ``scores`` (n,), ``labels`` (n,)."""

    masks: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def postprocess(outputs: dict, image_size: int, score_threshold: float = 0.05) -> list[FramePrediction]:
    """Turn head outputs into per-frame detections (score = class probability × mask quality)."""
    probs = outputs["logits"].softmax(-1)[..., :-1]
    masks = F.interpolate(outputs["masks"], size=image_size, mode="bilinear", align_corners=False)
    out = []
    for b in range(probs.shape[0]):
        score, label = probs[b].max(-1)
        m = masks[b].sigmoid()
        binary = m > 0.5
        quality = (m * binary).flatten(1).sum(1) / binary.flatten(1).sum(1).clamp(min=1)
        score = score * quality
        keep = (score > score_threshold) & binary.flatten(1).any(1)
        order = score[keep].argsort(descending=True)
        out.append(FramePrediction(binary[keep][order].cpu(), score[keep][order].cpu(),
                                   label[keep][order].cpu()))
    return out


@dataclass(frozen=True)
class VideoPrediction:
    """Tracks of a clip: ``masks`` (T, n, H, W) bool, ``scores`` (n,), ``labels`` (n,)."""

    masks: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter).clamp(min=1)


def track(frames: list[FramePrediction], iou_threshold: float = 0.2, max_gap: int = 3,
          min_score: float = 0.3) -> VideoPrediction:
    """Link detections across frames by Hungarian matching on mask IoU with live tracks.

    A detection with score ≥ ``min_score`` that matches no track starts one; a track unseen for
    more than ``max_gap`` frames ends. A track's score is its mean detection score and its label the
    score-weighted majority.
    """
    if not frames:
        raise ValueError("track() needs at least one frame of detections.")
    T = len(frames)
    shape = frames[0].masks.shape[-2:]
    tracks: list[dict] = []
    for t, det in enumerate(frames):
        if det.masks.shape[-2:] != shape:
            raise ValueError(f"Frame {t} has masks of size {tuple(det.masks.shape[-2:])}, "
                             f"frame 0 of size {tuple(shape)}: all frames of a clip must match.")
        live = [k for k, tr in enumerate(tracks) if t - tr["last"] <= max_gap]
        used = set()
        if live and len(det.scores):
            last = torch.stack([tracks[k]["masks"][tracks[k]["last"]] for k in live])
            iou = _mask_iou(last, det.masks).numpy()
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= iou_threshold:
                    tr = tracks[live[r]]
                    tr["masks"][t], tr["last"] = det.masks[c], t
                    tr["scores"].append(float(det.scores[c])), tr["labels"].append(int(det.labels[c]))
                    used.add(int(c))
        for c in range(len(det.scores)):
            if c not in used and det.scores[c] >= min_score:
                tracks.append({"masks": {t: det.masks[c]}, "last": t, "scores": [float(det.scores[c])],
                               "labels": [int(det.labels[c])]})
    masks = torch.zeros(T, len(tracks), *shape, dtype=torch.bool)
    scores, labels = torch.zeros(len(tracks)), torch.zeros(len(tracks), dtype=torch.long)
    for k, tr in enumerate(tracks):
        for t, m in tr["masks"].items():
            masks[t, k] = m
        scores[k] = float(np.mean(tr["scores"]))
        votes: dict[int, float] = {}
        for lab, s in zip(tr["labels"], tr["scores"]):
            votes[lab] = votes.get(lab, 0.0) + s
        labels[k] = max(votes, key=votes.get)
    return VideoPrediction(masks, scores, labels)


def frame_loss(model: VideoSegmenter, batch: dict) -> tuple[torch.Tensor, dict]:
    """Dense training loss on a batch of frames ``{"image", "masks", "labels"}``."""
    return segmentation_loss(model(batch["image"]), batch["masks"], batch["labels"])


def from_timm(model: str | nn.Module, image_size: int, num_classes: int, pretrained: bool = True,
              **head: int) -> VideoSegmenter:
    """A :class:`VideoSegmenter` whose backbone carries the weights of a timm ViT.

    ``model`` is a timm model name (e.g. ``"vit_small_patch14_dinov2.lvd142m"``, downloaded when
    ``pretrained``) or a timm ``VisionTransformer``. The patch embedding, the blocks (with layer
    scale) and the final norm are copied; the position embedding of the patches is resampled to the
    new grid; class and register tokens are dropped, because pruning works on patch tokens only.
    The head (``num_queries``, ``decoder_layers``, ``pixel_dim``) starts from scratch. We build our
    own blocks rather than use timm's so that every block takes a key mask.
    """
    import timm
    from timm.layers import resample_abs_pos_embed

    vit = timm.create_model(model, pretrained=pretrained, num_classes=0) if isinstance(model, str) else model
    first = vit.blocks[0]
    patch = vit.patch_embed.patch_size[0]
    config = SegmenterConfig(image_size=image_size, patch_size=patch, dim=vit.embed_dim,
                             depth=len(vit.blocks), heads=first.attn.num_heads,
                             mlp_ratio=first.mlp.fc1.out_features / vit.embed_dim,
                             num_classes=num_classes, layer_scale=hasattr(first.ls1, "gamma"), **head)
    seg = VideoSegmenter(config)
    with torch.no_grad():
        seg.patch_embed.load_state_dict(vit.patch_embed.proj.state_dict())
        prefix = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
        old = vit.patch_embed.grid_size
        pos = resample_abs_pos_embed(vit.pos_embed, [config.grid, config.grid], list(old),
                                     num_prefix_tokens=prefix)
        seg.pos_embed.copy_(pos[:, prefix:])
        for mine, theirs in zip(seg.blocks, vit.blocks):
            for name in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"):
                mine.get_submodule(name).load_state_dict(theirs.get_submodule(name).state_dict())
            mine.attn.qkv.weight.copy_(theirs.attn.qkv.weight)
            mine.attn.qkv.bias.copy_(theirs.attn.qkv.bias if theirs.attn.qkv.bias is not None else 0)
            if config.layer_scale:
                mine.ls1.copy_(theirs.ls1.gamma)
                mine.ls2.copy_(theirs.ls2.gamma)
        seg.norm.load_state_dict(vit.norm.state_dict())
    return seg
