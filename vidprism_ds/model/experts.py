"""Temporal experts (docs/model.md#temporal-experts): what an expert computes, nothing about where it runs.

All experts share one architecture, a post-norm Transformer layer; they are heterogeneous by the
stream they read (its sampling rate). Routing and placement live in ``local_dispatch.py`` and
``vidprism_ds.parallel``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TemporalExpert(nn.Module):
    """``x = LN(x + MHA(x))``, ``x = LN(x + FFN(x))`` on a (N, L, D) batch of streams.

    Parameter names follow the official state dict (attn, ln_1, ffn.0, ffn.2, ln_2). The official
    experts have no positional embedding, so token order reaches them only through the fusion
    convolutions; ``max_positions > 0`` adds a learned one (an ablation).
    """

    def __init__(self, dim: int, num_heads: int = 4, ffn_mult: int = 2, max_positions: int = 0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), QuickGELU(), nn.Linear(ffn_mult * dim, dim))
        self.ln_2 = nn.LayerNorm(dim)
        self.pos_embed = nn.Parameter(torch.zeros(max_positions, dim)) if max_positions > 0 else None
        if self.pos_embed is not None:
            nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, x_nld: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            x_nld = x_nld + self.pos_embed[: x_nld.shape[1]]
        x_nld = self.ln_1(x_nld + self._self_attention(x_nld))
        return self.ln_2(x_nld + self.ffn(x_nld))

    def _self_attention(self, x_nld: torch.Tensor) -> torch.Tensor:
        """``self.attn(x, x, x)`` computed with one packed projection and fused SDPA.

        nn.MultiheadAttention holds the (official-layout) parameters; calling it directly in
        training mode routes through transposes and copies that cost more than the attention
        itself on these short streams.
        """
        batch, length, dim = x_nld.shape
        heads = self.attn.num_heads
        qkv = F.linear(x_nld, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q_nhlc, k_nhlc, v_nhlc = qkv.view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out_nhlc = F.scaled_dot_product_attention(q_nhlc, k_nhlc, v_nhlc)
        return self.attn.out_proj(out_nhlc.transpose(1, 2).reshape(batch, length, dim))
