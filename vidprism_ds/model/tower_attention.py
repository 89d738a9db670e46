"""The vision tower's self-attention as one packed-QKV GEMM and one ``scaled_dot_product_attention``.

open_clip's blocks call ``nn.MultiheadAttention``, whose training path (``F.multi_head_attention_forward``)
works sequence-first: a batch-first input is transposed in and out, the packed q/k/v projection is
split with ``unflatten``/``transpose``/``contiguous`` copies, and the heads are permuted back before the
output projection, about ten copies of the block's activations per forward and again in backward
(docs/benchmarks.md, "Direct attention"). ``PackedSelfAttention`` computes the same function on the
batch-first layout directly: x (N, L, D) -> qkv (N, L, 3, H, d) -> q, k, v (N, H, L, d) as views of
that one tensor -> SDPA -> (N, L, D) -> out_proj.

It keeps ``nn.MultiheadAttention``'s parameters, under the same names (``in_proj_weight``,
``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``) and as the same ``Parameter`` objects, and its
``num_heads``/``head_dim``/``batch_first`` attributes, so weights load as before, optimizer groups and
freezing are unchanged, and tensor parallelism (``vidprism_ds.parallel.tensor_parallel``) shards it as it
sharded the module it replaces. Which SDPA kernel runs is the dispatcher's choice (flash attention for
bf16 on Hopper at ViT head sizes); ``bench/gpu_check.py`` reports the one it saw.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def check_self_attention_call(module_name: str, query: torch.Tensor, key: Optional[torch.Tensor],
                              value: Optional[torch.Tensor], need_weights: bool,
                              attn_mask: Optional[torch.Tensor]) -> None:
    """What a drop-in for open_clip's ``nn.MultiheadAttention`` call computes here: self-attention, no
    attention weights, an additive mask at most."""
    if need_weights or (key is not None and key is not query) or (value is not None and value is not query):
        raise ValueError(f"{module_name} computes self-attention without attention weights only")
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # nn.MultiheadAttention masks out True, scaled_dot_product_attention keeps True: only additive
        # float masks (what open_clip passes) mean the same to both
        raise ValueError(f"{module_name} takes an additive float attn_mask, not a boolean one")


class PackedSelfAttention(nn.Module):
    """Drop-in for an open_clip block's ``nn.MultiheadAttention`` (self-attention, ``need_weights=False``,
    no dropout): the same parameters, one GEMM for q/k/v, SDPA on views of its output."""

    def __init__(self, attn: nn.MultiheadAttention):
        super().__init__()
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn or attn.dropout:
            raise ValueError("PackedSelfAttention replaces self-attention with packed q/k/v, no bias_k/v, "
                             "no zero attention and no dropout (open_clip's towers)")
        self.num_heads = attn.num_heads
        self.head_dim = attn.head_dim
        self.embed_dim = attn.embed_dim
        self.batch_first = attn.batch_first
        self.in_proj_weight = attn.in_proj_weight  # (3D, D): q, k, v stacked as nn.MultiheadAttention keeps them
        self.in_proj_bias = attn.in_proj_bias
        self.out_proj = attn.out_proj

    def forward(self, query: torch.Tensor, key: Optional[torch.Tensor] = None, value: Optional[torch.Tensor] = None,
                need_weights: bool = False, attn_mask: Optional[torch.Tensor] = None):
        check_self_attention_call(type(self).__name__, query, key, value, need_weights, attn_mask)
        x_nld = query if self.batch_first else query.transpose(0, 1)
        batch, length, _ = x_nld.shape
        qkv_nl3hd = F.linear(x_nld, self.in_proj_weight, self.in_proj_bias).view(
            batch, length, 3, self.num_heads, self.head_dim)
        q_nhld, k_nhld, v_nhld = qkv_nl3hd.permute(2, 0, 3, 1, 4).unbind(0)
        heads_nhld = F.scaled_dot_product_attention(q_nhld, k_nhld, v_nhld, attn_mask=attn_mask)
        out_nld = self.out_proj(heads_nhld.transpose(1, 2).reshape(batch, length, self.embed_dim))
        return (out_nld if self.batch_first else out_nld.transpose(0, 1)), None


def use_packed_attention(blocks: list[nn.Module]) -> int:
    """In place: each block's ``nn.MultiheadAttention`` becomes a ``PackedSelfAttention`` over its
    parameters. Returns the number replaced (blocks already converted, or sharded for tensor parallelism,
    are left as they are)."""
    replaced = 0
    for block in blocks:
        if type(block.attn) is nn.MultiheadAttention:
            block.attn = PackedSelfAttention(block.attn)
            replaced += 1
    return replaced


__all__ = ["PackedSelfAttention", "check_self_attention_call", "use_packed_attention"]
