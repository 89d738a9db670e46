"""Expert-parallel process groups, created once and passed explicitly to what needs them.

DeepSpeed keeps its expert groups in ``deepspeed.utils.groups`` (its ZeRO optimizer looks them up by
``group_name``), so they are created there, through ``deepspeed_private``, with DeepSpeed's layout: for
world size W and EP size P the EP groups are consecutive ranks [0..P-1], [P..2P-1], ... (all-to-all
inside), and the expert-data-parallel groups are strided {i, i+P, i+2P, ...} (gradient all-reduce of
expert weights). Our own code receives the groups through ``ParallelContext`` and never reads
DeepSpeed's globals itself.

With tensor parallelism (``tp_size`` p > 1) the ranks are laid out as megatron-core's ``parallel_state``
builds them: TP groups are consecutive ranks [0..p-1], [p..2p-1], ... (inside a node when p divides the
GPUs per node), data-parallel groups are strided {t, t+p, t+2p, ...} across the TP groups, and the expert
groups are built inside each data-parallel group (DeepSpeed's ``_create_expert_data_and_model_parallel``):
EP groups are runs of ``ep_size`` consecutive members of a DP group, expert-data groups stride over them.
DeepSpeed learns the layout from ``DataTensorParallelMpu`` (``deepspeed.initialize(mpu=...)``), so ZeRO
partitions over the DP group only and gradients are averaged over it, never over the TP group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch.distributed as dist

from vidprism_ds.parallel import deepspeed_private
from vidprism_ds.parallel.dims import ParallelDims


@dataclass(frozen=True)
class ParallelContext:
    world_size: int
    rank: int
    ep_size: int
    ep_rank: int
    ep_group: dist.ProcessGroup
    expert_data_group: dist.ProcessGroup
    # Tensor parallelism of the frame encoder (docs/parallel.md); tp_size 1 means none and no group.
    tp_size: int = 1
    tp_rank: int = 0
    tp_group: Optional[dist.ProcessGroup] = None
    # What deepspeed.initialize(mpu=...) gets: None with tp_size 1 (DeepSpeed's own all-ranks layout).
    mpu: Optional[DataTensorParallelMpu] = None

    @property
    def group_name(self) -> str:
        return deepspeed_private.expert_group_name(self.ep_size)

    @property
    def dims(self) -> ParallelDims:
        return ParallelDims(self.world_size, self.tp_size, self.ep_size)

    @property
    def dp_size(self) -> int:
        return self.dims.dp_size

    @property
    def dp_group(self) -> Optional[dist.ProcessGroup]:
        """The data-parallel group for reductions over the replicas; None (all ranks) without tensor
        parallelism, where every rank is a replica."""
        return self.mpu.get_data_parallel_group() if self.mpu is not None else None

    @property
    def dp_rank(self) -> int:
        return self.dims.dp_rank(self.rank)

    @property
    def expert_data_rank(self) -> int:
        return self.dims.expert_data_rank(self.rank)


def _from_parallel_state(name: str):
    """A method returning megatron-core ``parallel_state.<name>()``."""
    def method(self):
        return getattr(self._state, name)()
    method.__name__ = name
    return method


class DataTensorParallelMpu:
    """The model-parallel unit DeepSpeed reads (``deepspeed.initialize(mpu=...)``), over megatron-core's
    ``parallel_state``: model parallelism is the TP group, data parallelism the DP group; no pipeline.
    Only the methods DeepSpeed 0.19 calls are provided (it probes for optional ones with ``hasattr``)."""

    def __init__(self):
        from megatron.core import parallel_state
        self._state = parallel_state

    get_tensor_model_parallel_group = _from_parallel_state("get_tensor_model_parallel_group")
    get_tensor_model_parallel_world_size = _from_parallel_state("get_tensor_model_parallel_world_size")
    get_tensor_model_parallel_rank = _from_parallel_state("get_tensor_model_parallel_rank")
    get_tensor_model_parallel_src_rank = _from_parallel_state("get_tensor_model_parallel_src_rank")
    # DeepSpeed's older names for the same group (no pipeline: model parallel = tensor parallel)
    get_model_parallel_group = get_tensor_model_parallel_group
    get_model_parallel_world_size = get_tensor_model_parallel_world_size
    get_model_parallel_rank = get_tensor_model_parallel_rank
    get_data_parallel_group = _from_parallel_state("get_data_parallel_group")
    get_data_parallel_world_size = _from_parallel_state("get_data_parallel_world_size")
    get_data_parallel_rank = _from_parallel_state("get_data_parallel_rank")

    def get_data_parallel_group_ranks(self) -> list[int]:
        return dist.get_process_group_ranks(self.get_data_parallel_group())


def init_expert_parallel(ep_size: int, tp_size: int = 1) -> ParallelContext:
    """Create (or reuse) the process groups for ``ep_size`` and ``tp_size``.

    Requires an initialised default process group (``deepspeed.init_distributed``). With tp_size 1 these
    are DeepSpeed's expert and expert-data-parallel groups over all ranks, as without tensor parallelism.
    """
    if not dist.is_initialized():
        raise RuntimeError("init_expert_parallel needs torch.distributed initialised first "
                           "(deepspeed.init_distributed)")
    rank = dist.get_rank()
    dims = ParallelDims(dist.get_world_size(), tp_size, ep_size)  # raises ConfigError naming the key
    if tp_size > 1:
        return _init_tensor_and_expert_parallel(dims, rank)
    name = deepspeed_private.expert_group_name(ep_size)
    if not deepspeed_private.expert_groups_exist(name):
        deepspeed_private.create_expert_groups(ep_size)
    return ParallelContext(
        world_size=dims.world_size, rank=rank, ep_size=ep_size, ep_rank=dims.ep_rank(rank),
        ep_group=deepspeed_private.expert_parallel_group(name),
        expert_data_group=deepspeed_private.expert_data_parallel_group(name))


def _init_tensor_and_expert_parallel(dims: ParallelDims, rank: int) -> ParallelContext:
    from megatron.core import parallel_state

    tp_size, ep_size = dims.tp_size, dims.ep_size
    if not parallel_state.model_parallel_is_initialized():
        # megatron's default order ("tp-cp-ep-dp-pp") gives consecutive TP ranks and strided DP groups
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp_size, create_gloo_process_groups=False)
    elif parallel_state.get_tensor_model_parallel_world_size() != tp_size:
        raise RuntimeError(f"megatron-core's groups already exist with tp_size "
                           f"{parallel_state.get_tensor_model_parallel_world_size()}, not {tp_size}")
    mpu = DataTensorParallelMpu()
    name = deepspeed_private.expert_group_name(ep_size)
    if not deepspeed_private.expert_groups_exist(name):
        deepspeed_private.create_expert_groups_inside_data_parallel(ep_size, mpu)
    ctx = ParallelContext(
        world_size=dims.world_size, rank=rank, ep_size=ep_size, ep_rank=dims.ep_rank(rank),
        ep_group=deepspeed_private.expert_parallel_group(name),
        expert_data_group=deepspeed_private.expert_data_parallel_group(name),
        tp_size=tp_size, tp_rank=mpu.get_tensor_model_parallel_rank(), tp_group=mpu.get_tensor_model_parallel_group(),
        mpu=mpu)
    _check_layout(ctx)
    return ctx


def _check_layout(ctx: ParallelContext) -> None:
    """The groups megatron-core and DeepSpeed built are the layout the rest of the code assumes."""
    tp_ranks = dist.get_process_group_ranks(ctx.tp_group)
    expected_tp = list(range(ctx.dp_rank * ctx.tp_size, (ctx.dp_rank + 1) * ctx.tp_size))
    ep_rank = dist.get_rank(group=ctx.ep_group)
    if tp_ranks != expected_tp or ctx.tp_rank != ctx.rank % ctx.tp_size or ep_rank != ctx.ep_rank:
        raise RuntimeError(f"unexpected process-group layout on rank {ctx.rank}: TP group {tp_ranks} (expected "
                           f"{expected_tp}), EP rank {ep_rank} (expected {ctx.ep_rank})")
