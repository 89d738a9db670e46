"""Tensor parallelism of the CLIP frame encoder with megatron-core, applied after the model is built.

Each residual block of the ViT gets megatron-core's ``ColumnParallelLinear`` / ``RowParallelLinear`` over
the tensor-parallel group (docs/parallel.md#tensor-parallelism):

- attention: the packed q/k/v projection ``in_proj`` is column-parallel, split BY HEADS (rank r holds
  the q, k and v rows of heads [r*h/p, (r+1)*h/p)), each rank attends over its own heads, and the output
  projection ``out_proj`` is row-parallel (its input columns are those heads; one all-reduce);
- MLP: ``c_fc`` column-parallel, ``c_proj`` row-parallel (one all-reduce).

Everything else (patch embedding, LayerNorms, class token, ``proj``, the VidPrism head) is replicated:
its gradients are computed from all-reduced activations, so they are the same on every rank of a TP
group and the parameters stay identical without communication. The shards are cut from the weights
already in the model (pretrained or random), so tp_size p starts from exactly the tp_size 1 weights.

Every sharded parameter carries ``tp_layout`` (a ``TensorParallelLayout``): its name in the tp_size 1
model's state dict and how to cut a full tensor into this rank's shard and put the shards back together;
checkpoints and exports use it to gather and re-shard weights and optimizer moments. Sequence
parallelism is not used: megatron-core's sequence-parallel all-gather allocates its buffer on the current
CUDA device and fails on CPU (checked with 0.16.1 on gloo); at the activation sizes of a ViT frame it
would save little next to the weights TP shards.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core import ModelParallelConfig
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from torch import nn

from vidprism_ds.model.backbone import transformer_blocks
from vidprism_ds.model.tower_attention import check_self_attention_call
from vidprism_ds.parallel.context import ParallelContext
from vidprism_ds.parallel.tp_layout import (SHARDED_SUFFIXES, TP_LAYOUT_ATTR, TensorParallelLayout,
                                            assemble_module_states, check_tp_divides, localise_module_state,
                                            parameter_full_name, sharded_layout, tp_full_name)

# the layout helpers live in tp_layout (no megatron-core import); the names stay importable from here

# ------------------------------------------------------------------------------------------ layers


def _drop_extra_state(layer: nn.Module) -> None:
    # megatron-core adds an ``_extra_state`` entry (None, for Transformer Engine compatibility) to the
    # state dict and a pre-hook that expects it back; without them the state dict holds only weights,
    # with the tp_size 1 model's keys.
    layer._load_state_dict_pre_hooks.clear()


class _ColumnParallel(ColumnParallelLinear):
    """Megatron's column-parallel linear layer returning only its output (bias added)."""

    get_extra_state = nn.Module.get_extra_state
    set_extra_state = nn.Module.set_extra_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class _RowParallel(RowParallelLinear):
    """Megatron's row-parallel linear layer (input already split) returning only its output."""

    get_extra_state = nn.Module.get_extra_state
    set_extra_state = nn.Module.set_extra_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


def _megatron_config(ctx: ParallelContext, dtype: torch.dtype) -> ModelParallelConfig:
    # CPU initialisation without megatron's own init: the weights are copied from the built model
    return ModelParallelConfig(tensor_model_parallel_size=ctx.tp_size, use_cpu_initialization=True,
                               perform_initialization=False, params_dtype=dtype, sequence_parallel=False)


def _copy_sharded(target: nn.Parameter, source: torch.Tensor, layout: Optional[TensorParallelLayout],
                  ctx: ParallelContext) -> None:
    with torch.no_grad():
        target.copy_(source if layout is None else layout.shard(source, ctx.tp_rank, ctx.tp_size))
    target.requires_grad_(source.requires_grad)
    if layout is not None:
        setattr(target, TP_LAYOUT_ATTR, layout)
        # megatron sets its own attributes only when it initialises the weight itself (it does not here);
        # DeepSpeed's gradient norm counts a parameter with them on every TP rank, others on TP rank 0 only
        if not hasattr(target, "tensor_model_parallel"):
            set_tensor_model_parallel_attributes(target, True, layout.split_dim, layout.packed)


def column_parallel(weight: torch.Tensor, bias: Optional[torch.Tensor], ctx: ParallelContext,
                    block_name: str, tp_prefix: str) -> _ColumnParallel:
    """A column-parallel copy of the linear map (``weight``, ``bias``), split on output features, as the
    layouts of ``block_name + tp_prefix + ".weight"`` / ``".bias"`` in ``SHARDED_SUFFIXES`` say."""
    weight_layout = sharded_layout(block_name, f"{tp_prefix}.weight")
    packed = weight_layout.packed
    out_features, in_features = weight.shape
    layer = _ColumnParallel(in_features, out_features, config=_megatron_config(ctx, weight.dtype),
                            init_method=nn.init.zeros_, bias=bias is not None, gather_output=False,
                            stride=packed, tp_group=ctx.tp_group)
    _drop_extra_state(layer)
    _copy_sharded(layer.weight, weight, weight_layout, ctx)
    if bias is not None:
        _copy_sharded(layer.bias, bias, sharded_layout(block_name, f"{tp_prefix}.bias"), ctx)
    return layer


def row_parallel(linear: nn.Linear, ctx: ParallelContext, block_name: str, tp_prefix: str) -> _RowParallel:
    """A row-parallel copy of ``linear`` (split on input features; the bias is replicated)."""
    layer = _RowParallel(linear.in_features, linear.out_features, config=_megatron_config(ctx, linear.weight.dtype),
                         init_method=nn.init.zeros_, bias=linear.bias is not None, input_is_parallel=True,
                         skip_bias_add=False, tp_group=ctx.tp_group)
    _drop_extra_state(layer)
    _copy_sharded(layer.weight, linear.weight, sharded_layout(block_name, f"{tp_prefix}.weight"), ctx)
    if linear.bias is not None:
        _copy_sharded(layer.bias, linear.bias, None, ctx)
    return layer


class TensorParallelSelfAttention(nn.Module):
    """Drop-in for open_clip's ``nn.MultiheadAttention`` (self-attention, ``need_weights=False``) holding
    ``heads / tp_size`` heads: q/k/v column-parallel by heads, output projection row-parallel."""

    def __init__(self, attn: nn.MultiheadAttention, ctx: ParallelContext, block_name: str):
        super().__init__()
        self.batch_first = attn.batch_first
        self.local_heads = attn.num_heads // ctx.tp_size
        self.head_dim = attn.head_dim
        self.qkv = column_parallel(attn.in_proj_weight, attn.in_proj_bias, ctx, block_name, ".attn.qkv")
        self.out_proj = row_parallel(attn.out_proj, ctx, block_name, ".attn.out_proj")

    def forward(self, query: torch.Tensor, key: Optional[torch.Tensor] = None, value: Optional[torch.Tensor] = None,
                need_weights: bool = False, attn_mask: Optional[torch.Tensor] = None):
        check_self_attention_call(type(self).__name__, query, key, value, need_weights, attn_mask)
        x_bld = query if self.batch_first else query.transpose(0, 1)
        batch, length, _ = x_bld.shape
        q, k, v = (t.reshape(batch, length, self.local_heads, self.head_dim).transpose(1, 2)
                   for t in self.qkv(x_bld).chunk(3, dim=-1))
        heads_bhld = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out_bld = self.out_proj(heads_bhld.transpose(1, 2).reshape(batch, length, self.local_heads * self.head_dim))
        return (out_bld if self.batch_first else out_bld.transpose(0, 1)), None


# ------------------------------------------------------------------------------------------- apply


def apply_tensor_parallel(model: nn.Module, ctx: ParallelContext) -> int:
    """In place: every vision block's attention and MLP become tensor-parallel over ``ctx.tp_group``.
    Returns the number of blocks changed (0 when ``ctx.tp_size`` is 1: the model is left as it is)."""
    if ctx.tp_size == 1:
        return 0
    blocks = transformer_blocks(model)
    check_tp_divides(blocks, ctx.tp_size)
    for name, block in ((b.name, b.module) for b in blocks):
        block.attn = TensorParallelSelfAttention(block.attn, ctx, name)
        block.mlp.c_fc = column_parallel(block.mlp.c_fc.weight, block.mlp.c_fc.bias, ctx, name, ".mlp.c_fc")
        block.mlp.c_proj = row_parallel(block.mlp.c_proj, ctx, name, ".mlp.c_proj")
    return len(blocks)


__all__ = [
    "SHARDED_SUFFIXES", "TP_LAYOUT_ATTR", "TensorParallelLayout", "TensorParallelSelfAttention", "apply_tensor_parallel",
    "assemble_module_states", "check_tp_divides", "sharded_layout", "localise_module_state", "parameter_full_name", "tp_full_name",
]
