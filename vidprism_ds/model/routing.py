"""Scaled experts (beyond the paper): several experts per sampling rate, each clip's stream routed top-k.

A rate group of ``n`` experts shares one stream (B, L, D). A linear router scores the stream's mean token
against the group's experts; megatron-core's ``moe_utils`` does the routing maths (top-k with softmax
scores, capacity dropping, permutation, the Switch load-balancing loss and the router z-loss).

Shapes stay static, so the forward pass never synchronises with the host and the expert-parallel
all-to-all knows its split sizes in advance: every expert receives exactly ``capacity`` streams. Without a
capacity factor the capacity is the whole batch (dropless): every expert computes every stream of its
rate and only the top-k routing weights are non-zero. With a capacity factor ``c`` the capacity is
``ceil(c * B * k / n)`` and the lowest-probability streams over capacity are dropped, as in Switch.

With one expert per rate the head bypasses this module entirely, which is the paper's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import types
import warnings

import torch
from torch import nn

from vidprism_ds.config.validation import check_router_topk

_MOE_UTILS: Optional[types.ModuleType] = None


def _moe_utils() -> types.ModuleType:
    """megatron-core's routing maths, imported on first use: the import costs seconds and is only
    needed with experts_per_rate > 1. Its warnings about the absent Transformer Engine/Apex fused
    kernels are expected (the pure-torch functions used here do not need them).

    Memoised in a plain global rather than ``functools.cache``: torch.compile traces through a cache
    wrapper into the body, and ``warnings.catch_warnings`` there is a graph break in every forward.
    ``RateGroupRouter.__init__`` imports eagerly, so a traced ``route`` only reads the global.
    """
    global _MOE_UTILS
    if _MOE_UTILS is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
            from megatron.core.transformer.moe import moe_utils
        _MOE_UTILS = moe_utils
    return _MOE_UTILS


@dataclass
class RoutedStreams:
    expert_inputs: list[torch.Tensor]  # n tensors (capacity, L, D), one per expert of the group
    combine_probs: Optional[torch.Tensor]  # (n * capacity,) weight of each routed copy; 0 for padding
    sorted_indices: Optional[torch.Tensor]  # (n * capacity,) clip index of each routed copy
    aux_loss: torch.Tensor  # Switch load-balancing loss (coefficient 1; weighted in combine_losses)
    z_loss: torch.Tensor  # router z-loss (coefficient 1)
    # dropless (capacity = B): every expert reads the whole stream in clip order, so there is no permutation
    # to undo; (B, n) routing weights instead of combine_probs / sorted_indices
    dense_probs_bn: Optional[torch.Tensor] = None


def expert_capacity(batch: int, num_experts: int, topk: int, capacity_factor: Optional[float]) -> int:
    if capacity_factor is None:
        return batch
    return min(batch, _moe_utils().get_capacity(batch * topk, num_experts, capacity_factor))


class RateGroupRouter(nn.Module):
    def __init__(self, dim: int, num_experts: int, topk: int, capacity_factor: Optional[float]):
        super().__init__()
        check_router_topk(topk, num_experts)
        self.num_experts = num_experts
        self.topk = topk
        self.capacity_factor = capacity_factor
        self.gate = nn.Linear(dim, num_experts, bias=False)
        _moe_utils()  # import now, outside any torch.compile trace of route()

    def route(self, stream_bld: torch.Tensor) -> RoutedStreams:
        batch, length, dim = stream_bld.shape
        moe_utils = _moe_utils()
        logits_bn = self.gate(stream_bld.mean(dim=1))
        # Softmax before top-k (Switch): with k=1 a post-top-k softmax is constantly 1 and the gate
        # would learn only from the balancing loss.
        probs_bn, routing_map_bn = moe_utils.topk_routing_with_score_function(
            logits_bn, self.topk, use_pre_softmax=True)
        # The balancing loss sees the router's choice before capacity drops, as in Switch/Megatron.
        aux_loss = moe_utils.switch_load_balancing_loss_func(
            probs=torch.softmax(logits_bn, dim=-1), tokens_per_expert=routing_map_bn.sum(dim=0),
            total_num_tokens=batch, topk=self.topk, num_experts=self.num_experts, moe_aux_loss_coeff=1.0)
        z_loss = moe_utils.z_loss_func(logits_bn, 1.0)

        capacity = expert_capacity(batch, self.num_experts, self.topk, self.capacity_factor)
        if capacity < batch:
            probs_bn, slots_bn = moe_utils.apply_router_token_dropping(
                probs_bn, routing_map_bn, self.topk, self.capacity_factor, drop_policy="probs",
                pad_to_capacity=True)
        else:
            # Dropless: every expert takes the whole batch in clip order (what permute would produce, without
            # its argsort and gather); non-selected copies carry weight 0.
            return RoutedStreams([stream_bld] * self.num_experts, None, None, aux_loss, z_loss, dense_probs_bn=probs_bn)
        tokens_bf = stream_bld.reshape(batch, length * dim)
        routed_tokens, routed_probs, sorted_indices = moe_utils.permute(
            tokens_bf, slots_bn, probs=probs_bn, num_out_tokens=capacity * self.num_experts, drop_and_pad=True)
        expert_inputs = list(routed_tokens.view(self.num_experts, capacity, length, dim).unbind(0))
        return RoutedStreams(expert_inputs, routed_probs, sorted_indices, aux_loss, z_loss)

    @staticmethod
    def combine(routed: RoutedStreams, expert_outputs: list[torch.Tensor], batch: int) -> torch.Tensor:
        """Weighted sum of each clip's routed copies -> (B, L, D)."""
        if routed.dense_probs_bn is not None:
            # in expert order, as index_add_ over the permuted copies adds them
            probs_bn = routed.dense_probs_bn.to(expert_outputs[0].dtype)
            combined_bld = expert_outputs[0] * probs_bn[:, 0, None, None]
            for e in range(1, len(expert_outputs)):
                combined_bld = combined_bld + expert_outputs[e] * probs_bn[:, e, None, None]
            return combined_bld
        out_cld = torch.cat(expert_outputs, dim=0)
        length, dim = out_cld.shape[1:]
        weighted_cf = (out_cld * routed.combine_probs[:, None, None].to(out_cld.dtype)).reshape(-1, length * dim)
        combined_bf = out_cld.new_zeros(batch, length * dim).index_add_(0, routed.sorted_indices, weighted_cf)
        return combined_bf.view(batch, length, dim)
