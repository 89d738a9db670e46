"""Expert-parallel process groups, created once and passed explicitly to what needs them.

DeepSpeed keeps its expert groups in ``deepspeed.utils.groups`` (its ZeRO optimizer looks them up by
``group_name``), so they are created there, through ``deepspeed_private``, with DeepSpeed's layout: for
world size W and EP size P the EP groups are consecutive ranks [0..P-1], [P..2P-1], ... (all-to-all
inside), and the expert-data-parallel groups are strided {i, i+P, i+2P, ...} (gradient all-reduce of
expert weights). Our own code receives the groups through ``ParallelContext`` and never reads
DeepSpeed's globals itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from vidprism_ds.config.schema import ConfigError
from vidprism_ds.config.validation import check_ep_size
from vidprism_ds.parallel import deepspeed_private


@dataclass(frozen=True)
class ParallelContext:
    world_size: int
    rank: int
    ep_size: int
    ep_rank: int
    ep_group: dist.ProcessGroup
    expert_data_group: dist.ProcessGroup

    @property
    def group_name(self) -> str:
        return deepspeed_private.expert_group_name(self.ep_size)

    @property
    def expert_data_rank(self) -> int:
        return self.rank // self.ep_size


def validate_ep_size(ep_size: int, world_size: int) -> None:
    """``parallel.ep_size`` against the world size, which only the launch knows (the config's own rules on
    it are ``check_ep_size``)."""
    check_ep_size(ep_size)
    if world_size % ep_size != 0:
        raise ConfigError(f"parallel.ep_size: {ep_size} does not divide the world size {world_size} "
                          f"(processes); choose a divisor of {world_size}")


def init_expert_parallel(ep_size: int) -> ParallelContext:
    """Create (or reuse) DeepSpeed's expert and expert-data-parallel groups for ``ep_size``.

    Requires an initialised default process group (``deepspeed.init_distributed``).
    """
    if not dist.is_initialized():
        raise RuntimeError("init_expert_parallel needs torch.distributed initialised first "
                           "(deepspeed.init_distributed)")
    world_size, rank = dist.get_world_size(), dist.get_rank()
    validate_ep_size(ep_size, world_size)
    name = deepspeed_private.expert_group_name(ep_size)
    if not deepspeed_private.expert_groups_exist(name):
        deepspeed_private.create_expert_groups(ep_size)
    return ParallelContext(
        world_size=world_size, rank=rank, ep_size=ep_size, ep_rank=rank % ep_size,
        ep_group=deepspeed_private.expert_parallel_group(name),
        expert_data_group=deepspeed_private.expert_data_parallel_group(name))
