"""Attention readout (docs/model.md#readout): one learned query over all experts' tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vidprism_ds.model.head_constants import ConstantCache


class AttentionReadout(nn.Module):
    """``LN(MHA(query, tokens, tokens))`` with a single learned query, and per-expert attention mass.

    The parameters are an ``nn.MultiheadAttention`` (official layout), but the computation uses
    that there is one query shared by all clips: its key projection is folded into the query
    (``q_h . (W_k,h x + b_k,h) = (W_k,h^T q_h) . x + const``, and the constant cancels in the
    softmax) and the value projection is applied after pooling (attention weights sum to 1). The
    result is the same function with the per-token K/V projections (2 D^2 per token) gone.
    """

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__()
        # (1, 1, D) as in the official state dict (mote.readout_gate.global_query).
        self.global_query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ln = nn.LayerNorm(dim)
        self._constants = ConstantCache()

    def segments(self, lengths: list[int], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Constant (L_total, E) indicator of each expert's tokens, and (E, L_total) the mean over them."""
        def build():
            indicator_le = torch.block_diag(*[like.new_ones(length, 1) for length in lengths])
            return indicator_le, (indicator_le / indicator_le.sum(dim=0)).t().contiguous()
        return self._constants.get((tuple(lengths), like.device, like.dtype), build)

    def forward(self, expert_outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """expert_outputs: E tensors (B, L_e, D) -> fused (B, D), expert weights (B, E)."""
        tokens_bld = torch.cat(expert_outputs, dim=1)
        return self.read_packed(tokens_bld, self.segments([o.shape[1] for o in expert_outputs], tokens_bld)[0])

    def read_packed(self, tokens_bld: torch.Tensor, segment_le: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All experts' tokens packed (B, L_total, D) and their (L_total, E) indicator -> fused, weights.

        An expert's weight is the attention mass (averaged over heads) the query puts on its tokens.
        """
        dim = tokens_bld.shape[-1]
        heads = self.attn.num_heads
        head_dim = dim // heads
        w_q, w_k, w_v = self.attn.in_proj_weight.chunk(3, dim=0)
        b_q, _, b_v = self.attn.in_proj_bias.chunk(3, dim=0)

        query_k = F.linear(self.global_query.view(1, dim), w_q, b_q).view(dim, 1)
        # sum_c q[h, c] W_k[(h, c), :] per head: a row scaling and a sum over each head's rows (no einsum,
        # whose permutes cost more launches than the product itself)
        key_query_dh = (w_k * query_k).view(heads, head_dim, dim).sum(dim=1).t() / math.sqrt(head_dim)
        attn_bhl = (tokens_bld @ key_query_dh).transpose(1, 2).softmax(dim=-1)
        pooled_bhd = attn_bhl @ tokens_bld
        # head h's values from its own pooled token: the diagonal blocks of all heads' V projection
        values_bhh_c = F.linear(pooled_bhd, w_v).view(-1, heads, heads, head_dim)
        values_bch = values_bhh_c.diagonal(dim1=1, dim2=2)
        values_bd = (values_bch + b_v.view(heads, head_dim).t()).transpose(1, 2).flatten(1)
        out_bd = self.attn.out_proj(values_bd)
        fused_bd = self.ln(out_bd)

        # one matmul with a (L_total, E) segment indicator instead of a loop of slices
        expert_weights_be = attn_bhl.mean(dim=1) @ segment_le
        return fused_bd, expert_weights_be
