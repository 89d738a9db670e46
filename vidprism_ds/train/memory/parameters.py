"""Parameters, gradients and optimizer state: the elements on one rank.

``_count_rank_parameters`` counts the parameter elements on the busiest rank: dense ones and the rank's
experts (on a model not yet sharded, the placement ``parallelize_model`` would plan). Tensor parallelism
(``parallel.tp_size`` = t, vidprism_ds/parallel/tensor_parallel.py) splits each ViT block's q/k/v and fc1
(column-parallel: weight and bias) and out_proj and fc2 (row-parallel: weight; the bias is replicated)
over t consecutive ranks: those split tensors count 1/t; everything else of the tower (patch embedding,
LayerNorms, class token, ``proj``) and the VidPrism head are replicated over the TP group, the head's
experts keep expert parallelism. A model already parallelised counts its local shards as they are
(megatron-core's ``tensor_model_parallel`` attribute marks them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from deepspeed.moe.utils import is_moe_param
from torch import nn

from vidprism_ds.model.backbone import transformer_blocks
from vidprism_ds.parallel.apply import find_expert_head, plan_placement
from vidprism_ds.parallel.expert_shard import LocalExpertShard


@dataclass(frozen=True)
class _RankParameters:
    """Parameter elements on the busiest rank: dense ones (replicated over data parallelism) and the
    rank's experts (replicated over the expert-data-parallel group only)."""

    dense: int
    dense_trainable: int
    expert: int
    expert_trainable: int
    buffer_elements: int


def _expert_parameters_on_rank(model: nn.Module, ep_size: int) -> list[nn.Parameter]:
    """The expert parameters of the rank holding the most. A model that ``parallelize_model`` has
    sharded holds only its own (tagged for DeepSpeed: ``is_moe_param``); on an unsharded model the
    placement is planned here, as ``parallelize_model`` would."""
    tagged = [p for p in model.parameters() if is_moe_param(p)]
    head = find_expert_head(model)
    if tagged or head is None or isinstance(head.experts, LocalExpertShard):
        return tagged
    placement = plan_placement(head, ep_size)
    per_rank = [[p for e in placement.local_experts(rank) for p in head.experts[str(e)].parameters()]
                for rank in range(ep_size)]
    return max(per_rank, key=lambda params: sum(p.numel() for p in params))


def _all_expert_parameter_ids(model: nn.Module) -> set[int]:
    head = find_expert_head(model)
    ids = {id(p) for p in model.parameters() if is_moe_param(p)}
    if head is not None:
        ids |= {id(p) for p in head.experts.parameters()}
    return ids


def _is_tensor_parallel(model: nn.Module) -> bool:
    """Whether ``model`` is already parallelised: megatron-core's attribute marks the local shards."""
    return any(getattr(p, "tensor_model_parallel", False) for p in model.parameters())


def _tensor_parallel_split_ids(model: nn.Module) -> set[int]:
    """The parameters tensor parallelism splits in a model not yet parallelised: in every vision block
    (the ones ``apply_tensor_parallel`` changes) q/k/v and fc1 (weight and bias, column-parallel) and the
    weights of out_proj and fc2 (row-parallel; their biases stay whole)."""
    split = []
    for block in (b.module for b in transformer_blocks(model)):
        split += [block.attn.in_proj_weight, block.attn.in_proj_bias, block.attn.out_proj.weight,
                  block.mlp.c_fc.weight, block.mlp.c_fc.bias, block.mlp.c_proj.weight]
    return {id(p) for p in split if p is not None}


def _count_rank_parameters(model: nn.Module, ep_size: int, tp_size: int = 1) -> _RankParameters:
    experts = _expert_parameters_on_rank(model, ep_size)
    expert_ids = _all_expert_parameter_ids(model)
    dense = [p for p in model.parameters() if id(p) not in expert_ids]
    split = set() if tp_size == 1 or _is_tensor_parallel(model) else _tensor_parallel_split_ids(model)

    def on_rank(p: torch.Tensor) -> int:
        return math.ceil(p.numel() / tp_size) if id(p) in split else p.numel()

    return _RankParameters(
        dense=sum(on_rank(p) for p in dense),
        dense_trainable=sum(on_rank(p) for p in dense if p.requires_grad),
        expert=sum(p.numel() for p in experts),
        expert_trainable=sum(p.numel() for p in experts if p.requires_grad),
        buffer_elements=sum(b.numel() for b in model.buffers()))
