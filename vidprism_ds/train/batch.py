"""The global batch: what stays the same when a recipe moves between world sizes.

A recipe is a number of optimizer steps of a global batch (clips per optimizer step over all ranks) with
a learning-rate schedule over those steps. ``train.micro_batch`` is fixed by memory, so with
``train.global_batch`` set the gradient accumulation is what adapts to the world size:
``grad_accum = global_batch / (micro_batch x dp_size)``. The data-parallel size ``dp_size`` of the batch is
the world size over ``parallel.tp_size``: the ranks of one tensor-parallel group compute one model replica
on the same batch, every other rank reads its own data, expert parallelism included (it splits the
experts, not the batch). Without tensor parallelism ``dp_size`` is the world size.

Optimizer steps per epoch are the same on any world size: the shard loader cuts the epoch's global order
into ``max(1, num_samples // global_batch)`` global batches and gives each data-parallel rank its
``grad_accum`` micro-batch slices of each (``data.global_order``), so an epoch is that many optimizer steps
of the same clips on any topology. A checkpoint records its position as (epoch, global batches done in it):
``resume_micro_batch`` turns that into this run's first micro-batch, whatever the world size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vidprism_ds.config.schema import ConfigError, TrainConfig
from vidprism_ds.parallel.dims import ParallelDims


@dataclass(frozen=True)
class BatchPlan:
    """The batch arithmetic of one run at its parallel sizes."""

    micro_batch: int  # clips per rank per forward/backward
    grad_accum: int  # micro-batches accumulated per optimizer step
    dims: ParallelDims  # the ranks of a tensor-parallel group read the same batch

    @property
    def dp_size(self) -> int:
        return self.dims.dp_size

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.dp_size

    def steps_per_epoch(self, batches_per_rank: int) -> int:
        """Optimizer steps in an epoch of ``batches_per_rank`` micro-batches on each rank."""
        return batches_per_rank // self.grad_accum

    def describe(self) -> str:
        stated = f"global batch {self.global_batch} = micro-batch {self.micro_batch} x grad_accum {self.grad_accum} x "
        if self.dims.tp_size > 1:
            replicas = "data-parallel rank" if self.dp_size == 1 else "data-parallel ranks"
            return (f"{stated}{self.dp_size} {replicas} ({self.dims.world_size} processes, "
                    f"parallel.tp_size={self.dims.tp_size})")
        processes = "process" if self.dp_size == 1 else "processes"
        return f"{stated}{self.dp_size} {processes}"


def largest_divisor_up_to(number: int, limit: int) -> int:
    """The largest micro-batch that is at most ``limit`` and divides ``number`` clips (1 at worst)."""
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


def _indivisible(train: TrainConfig, dims: ParallelDims) -> ConfigError:
    dp_size = dims.dp_size
    size_name, members = dims.dp_size_names()
    clips_per_micro_step = train.micro_batch * dp_size
    stated = (f"train.global_batch: {train.global_batch} is not a multiple of train.micro_batch x {size_name} "
              f"({train.micro_batch} x {dp_size} = {clips_per_micro_step})")
    if train.global_batch % dp_size:
        return ConfigError(f"{stated}, and {dp_size} {members} cannot share it evenly: run on a world size "
                           f"that divides {train.global_batch}, or change train.global_batch")
    per_rank = train.global_batch // dp_size
    fitting = largest_divisor_up_to(per_rank, train.micro_batch)
    return ConfigError(f"{stated}; each of the {dp_size} {members} trains {per_rank} clips a step: set "
                       f"train.micro_batch to a divisor of {per_rank} (e.g. {fitting}, with grad_accum "
                       f"{per_rank // fitting})")


def plan_batch(train: TrainConfig, dims: ParallelDims) -> BatchPlan:
    """The micro-batch and accumulation of a run at the parallel sizes ``dims``; raises ConfigError naming
    the keys when ``train.global_batch`` cannot be met or contradicts ``train.grad_accum``."""
    dp_size = dims.dp_size
    if not train.global_batch:
        return BatchPlan(train.micro_batch, train.grad_accum, dims)
    if train.global_batch % (train.micro_batch * dp_size):
        raise _indivisible(train, dims)
    derived = train.global_batch // (train.micro_batch * dp_size)
    # 1 is grad_accum's default: a config that names only the global batch leaves it there
    if train.grad_accum not in (1, derived):
        size_name = dims.dp_size_names()[0]
        raise ConfigError(f"train.grad_accum: {train.grad_accum} disagrees with train.global_batch "
                          f"{train.global_batch} = train.micro_batch {train.micro_batch} x grad_accum {derived} x "
                          f"{size_name} {dp_size}; remove train.grad_accum (it is derived) or set it to {derived}")
    return BatchPlan(train.micro_batch, derived, dims)


def lr_scale(train: TrainConfig, global_batch: int) -> float:
    """The factor ``train.lr_scaling`` applies to optim.lr (and so to the backbone's lr x clip_ratio); the
    config's own rules (lr_base_batch set where a rule needs it) are config.validation's."""
    if train.lr_scaling == "none":
        return 1.0
    ratio = global_batch / train.lr_base_batch
    return ratio if train.lr_scaling == "linear" else math.sqrt(ratio)


def resume_micro_batch(meta, plan: BatchPlan) -> int:
    """Where a resumed epoch starts, in this run's micro-batches on each rank: the next global batch after
    the checkpoint's (``meta.global_batches_in_epoch``, at any topology). With another global batch than
    the checkpoint's, the same clips of the epoch count as seen, rounded down to a whole global batch.
    Tags written before the position was recorded (-1) fall back to ``micro_batches_to_skip``."""
    done = getattr(meta, "global_batches_in_epoch", -1)
    if done < 0:
        saved_dp_size = ParallelDims(meta.world_size, meta.tp_size, meta.ep_size).dp_size
        return micro_batches_to_skip(meta.batches_in_epoch, meta.micro_batch, saved_dp_size, plan)
    clips_done = done * (meta.global_batch or plan.global_batch)
    return clips_done // plan.global_batch * plan.grad_accum


def micro_batches_to_skip(batches_in_epoch: int, saved_micro_batch: int, saved_dp_size: int,
                          plan: BatchPlan) -> int:
    """A checkpoint's position in its epoch (micro-batches consumed on each of its ranks; ``saved_dp_size``:
    its data-parallel size) in this run's
    micro-batches: the same number of clips of the epoch seen, rounded down to a whole optimizer step (the
    loop and DeepSpeed count accumulation from the first micro-batch trained). ``saved_micro_batch`` 0 (a
    tag written before it was recorded) means this run's micro-batch."""
    clips_seen = batches_in_epoch * (saved_micro_batch or plan.micro_batch) * saved_dp_size
    skip = clips_seen // (plan.micro_batch * plan.dp_size)
    return skip - skip % plan.grad_accum
