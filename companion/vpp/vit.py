"""VPP's plain pre-norm ViT blocks; attention takes a key mask so pruned tokens drop out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
        if key_mask is None and self.ls1 is None and not torch.is_grad_enabled():
            return self._fused(x)
        return self.feed_forward(self.attend(x, key_mask))

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """The whole block as torch's one fused inference kernel (the fast path of
        ``nn.TransformerEncoderLayer``): the same numbers as :meth:`attend` then
        :meth:`feed_forward`, without a dozen small operations' fixed cost each."""
        a = self.attn
        return torch._transformer_encoder_layer_fwd(
            x, x.shape[-1], a.heads, a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias,
            True, True, self.norm1.eps, self.norm1.weight, self.norm1.bias, self.norm2.weight,
            self.norm2.bias, self.mlp.fc1.weight, self.mlp.fc1.bias, self.mlp.fc2.weight,
            self.mlp.fc2.bias, None, None)
