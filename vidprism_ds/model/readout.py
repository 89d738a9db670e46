"""Attention readout (DESIGN.md section 2.5): one learned query over all experts' tokens."""

from __future__ import annotations

import torch
from torch import nn


class AttentionReadout(nn.Module):
    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__()
        # (1, 1, D) as in the official state dict (mote.readout_gate.global_query).
        self.global_query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ln = nn.LayerNorm(dim)

    def forward(self, expert_outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """expert_outputs: E tensors (B, L_e, D) -> fused (B, D), expert weights (B, E).

        An expert's weight is the attention mass (averaged over heads) the query puts on its tokens.
        """
        batch = expert_outputs[0].shape[0]
        lengths = [o.shape[1] for o in expert_outputs]
        kv_bld = torch.cat(expert_outputs, dim=1)
        query_b1d = self.global_query.expand(batch, 1, -1)
        pooled_b1d, attn_b1l = self.attn(query_b1d, kv_bld, kv_bld, need_weights=True, average_attn_weights=True)
        fused_bd = self.ln(pooled_b1d.squeeze(1))
        # one matmul with a (L_total, E) segment indicator instead of a loop of slices
        segment_le = torch.block_diag(*[kv_bld.new_ones(length, 1) for length in lengths])
        expert_weights_be = attn_b1l.squeeze(1) @ segment_le
        return fused_bd, expert_weights_be
