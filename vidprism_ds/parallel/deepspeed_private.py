"""Every use of DeepSpeed's undocumented conventions and private API, in one place.

DeepSpeed keeps its expert-parallel process groups in ``deepspeed.utils.groups`` behind underscore
functions, names them ``ep_size_<P>``, recognises expert parameters by two attributes it expects on
them, and its engine recognises an expert layer by ``isinstance(module, deepspeed.moe.layer.MoE)`` and
then reads attributes that ``MoE.__init__`` sets. None of this is a public, versioned interface, so
requirements.txt pins DeepSpeed to the minor release it was checked against, and
tests/parallel/test_deepspeed_private.py fails, naming the function or attribute, when an upgrade
changes any of it. Nothing else in vidprism_ds touches ``deepspeed.utils.groups``.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import nn

# What DeepSpeed's engine and checkpoint code read from an ``MoE`` instance (its attributes, and the
# module path of the local experts, which its checkpoint code renames per global expert id).
# ``vidprism_ds.parallel.expert_shard.LocalExpertShard`` skips ``MoE.__init__`` and sets exactly these.
MOE_ATTRIBUTES_READ_BY_ENGINE = ("num_experts", "ep_size", "expert_group_name", "num_local_experts")
MOE_LOCAL_EXPERTS_PATH = "deepspeed_moe.experts.deepspeed_experts"
# Set by ``MoE.__init__`` but read only by ``MoE.forward`` and ``MoE._create_process_groups`` (the shard
# replaces both) and, behind a ``hasattr``, by DeepSpeed's FLOPs profiler.
MOE_ATTRIBUTES_NOT_NEEDED = ("use_residual", "enable_expert_tensor_parallelism")


def expert_group_name(ep_size: int) -> str:
    """DeepSpeed's name for the expert groups of a given EP size (``MoE.__init__`` builds the same name;
    its ZeRO optimizer looks the groups up by a parameter's ``group_name``)."""
    return f"ep_size_{ep_size}"


def mark_expert_parameters(module: nn.Module, group_name: str) -> None:
    """Tag ``module``'s parameters as expert parameters the way DeepSpeed recognises them
    (``deepspeed.moe.utils.is_moe_param``): no all-reduce over the whole data-parallel group, only over
    the expert-data-parallel group named ``group_name`` (the optimizer groups are split by it)."""
    for param in module.parameters():
        param.allreduce = False
        param.group_name = group_name


def _groups():
    # Imported on first use: ``import deepspeed`` takes seconds, and the model code never needs it.
    from deepspeed.utils import groups
    return groups


def expert_groups_exist(group_name: str) -> bool:
    """Whether DeepSpeed already holds the expert groups named ``group_name`` (``ep_size_<P>``)."""
    return group_name in _groups()._get_expert_parallel_group_dict()


def create_expert_groups(ep_size: int) -> None:
    """Create DeepSpeed's expert-parallel and expert-data-parallel groups for ``ep_size`` with its
    default layout (expert-parallel groups of consecutive ranks, expert-data-parallel groups strided).
    Collective over the default process group; DeepSpeed leaves the existence check to the caller."""
    _groups()._create_expert_and_data_parallel(ep_size)


def create_expert_groups_inside_data_parallel(ep_size: int, mpu) -> None:
    """With tensor parallelism: DeepSpeed's expert + model + data layout, where the expert-parallel groups
    lie inside each data-parallel group of ``mpu`` (ranks of one tensor-parallel group never exchange
    experts). Collective over the default process group."""
    _groups()._create_expert_data_and_model_parallel(ep_size, mpu)


def expert_parallel_group(group_name: str) -> dist.ProcessGroup:
    """This rank's expert-parallel group (the all-to-all runs inside it)."""
    return _groups()._get_expert_parallel_group(group_name)


def expert_data_parallel_group(group_name: str) -> dist.ProcessGroup:
    """This rank's expert-data-parallel group (expert gradients are all-reduced over it)."""
    return _groups()._get_expert_data_parallel_group(group_name)


def link_state_fragments(engine_optimizer) -> None:
    """Point every parameter's fragment at its flat partition's optimizer state.

    ZeRO-1/2 and the bf16 optimizer link them once, right after the first parameter group steps
    (``_lazy_init_hp_params_optimizer_state``), when the later groups (the expert groups of an MoE model:
    one per expert-parallel size) have no state yet: their parameters' fragments stay empty and
    ``safe_get_full_optimizer_state`` raises "exp_avg not found". Linking again once every group has state
    fixes that; it only creates views."""
    link = getattr(engine_optimizer, "_lazy_init_hp_params_optimizer_state", None)
    if link is None or not hasattr(engine_optimizer, "_hp_optimizer_states_linked"):
        raise RuntimeError(f"{type(engine_optimizer).__name__} has no _lazy_init_hp_params_optimizer_state: "
                           "this DeepSpeed version links optimizer fragments differently")
    engine_optimizer._hp_optimizer_states_linked = False
    link()
