"""Temporal experts (DESIGN.md section 2.4): what an expert computes, nothing about where it runs.

All experts share one architecture, a post-norm Transformer layer; they are heterogeneous by the
stream they read (its sampling rate). Routing and placement live in ``dispatch.py`` and
``vidprism_ds.parallel``.
"""

from __future__ import annotations

import torch
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
        x_nld = self.ln_1(x_nld + self.attn(x_nld, x_nld, x_nld, need_weights=False)[0])
        return self.ln_2(x_nld + self.ffn(x_nld))
