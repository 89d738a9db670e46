"""Parallelism, applied after the model is built: expert placement, all-to-all dispatch, DeepSpeed tags."""

from vidprism_ds.parallel.apply import find_expert_head, parallelize_model, plan_placement
from vidprism_ds.parallel.context import ParallelContext, init_expert_parallel
from vidprism_ds.parallel.deepspeed_private import expert_group_name
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.parallel.placement import ExpertPlacement, place_experts

__all__ = [
    "ExpertPlacement", "ParallelContext", "expert_group_name", "find_expert_head", "init_expert_parallel",
    "ParallelDims", "parallelize_model", "place_experts", "plan_placement",
]
