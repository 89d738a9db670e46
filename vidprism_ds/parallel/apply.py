"""The one place where parallelism is applied to a built model (before ``deepspeed.initialize``): tensor
parallelism of the frame encoder, then expert parallelism of the head."""

from __future__ import annotations

from typing import Optional

from torch import nn

from vidprism_ds.parallel.context import ParallelContext
from vidprism_ds.parallel.deepspeed_private import mark_expert_parameters
from vidprism_ds.parallel.expert_parallel_dispatch import ExpertParallelDispatcher
from vidprism_ds.parallel.expert_shard import LocalExpertShard
from vidprism_ds.parallel.placement import ExpertPlacement, place_experts


def expert_stream_cost(tokens: int, expert: nn.Module, dim: int) -> float:
    """Forward FLOPs of ``expert`` on one stream: 2 per weight per token (projections, FFN) plus
    attention's 4*L^2*D, which makes long (fast-rate) streams disproportionately expensive."""
    weights = sum(p.numel() for p in expert.parameters() if p.dim() > 1)
    return 2.0 * weights * tokens + 4.0 * tokens * tokens * dim


def find_expert_head(model: nn.Module) -> Optional[nn.Module]:
    """The module holding ``experts`` (an ``nn.ModuleDict`` keyed by global id) and a ``dispatcher``."""
    for module in model.modules():
        if isinstance(getattr(module, "experts", None), (nn.ModuleDict, LocalExpertShard)) and hasattr(
                module, "dispatcher"):
            return module
    return None


def plan_placement(head: nn.Module, ep_size: int) -> ExpertPlacement:
    """Balance the experts' forward FLOPs at the head's longest clip (``head.max_frames``)."""
    experts = head.experts
    dim = next(p for p in experts["0"].parameters() if p.dim() > 1).shape[-1]
    lengths = head.expert_stream_lengths(head.max_frames)
    costs = [expert_stream_cost(length, experts[str(e)], dim) for e, length in enumerate(lengths)]
    return place_experts(costs, ep_size)


def parallelize_model(model: nn.Module, ctx: ParallelContext) -> Optional[ExpertPlacement]:
    """In place: the frame encoder's blocks tensor-parallel over ``ctx.tp_group`` when ``ctx.tp_size`` > 1
    (untouched otherwise); keep this rank's experts, route streams with all-to-all, tag expert parameters.

    Expert parallelism is applied at every ``ep_size`` including 1, so DeepSpeed always sees the same kind
    of model (expert gradients reduced over the expert-data-parallel group, experts saved per expert). A
    model without experts (the mean-pooling baseline) keeps its head. Returns the placement, or None.
    """
    head = find_expert_head(model)
    if head is not None and isinstance(head.experts, LocalExpertShard):
        raise RuntimeError("parallelize_model was already applied to this model")
    if ctx.tp_size > 1:  # megatron-core is imported only when tensor parallelism is used (seconds, warnings)
        from vidprism_ds.parallel.tensor_parallel import apply_tensor_parallel
        apply_tensor_parallel(model, ctx)
    if head is None:
        return None
    placement = plan_placement(head, ctx.ep_size)
    local = {e: head.experts[str(e)] for e in placement.local_experts(ctx.ep_rank)}
    for expert in local.values():
        # Gradients reduced over this expert's replicas only, not the whole data-parallel group.
        mark_expert_parameters(expert, ctx.group_name)
    head.experts = LocalExpertShard(local, placement, ctx.group_name)
    head.dispatcher = ExpertParallelDispatcher(placement, ctx.ep_group, ctx.ep_rank)
    return placement
