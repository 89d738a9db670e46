"""The parallel sizes of a run, and the ranks they give, validated once.

A run of ``world_size`` processes is laid out as megatron-core and DeepSpeed build their groups
(``vidprism_ds.parallel.context``): tensor-parallel groups of ``tp_size`` consecutive ranks compute one
model replica on one batch; the ``dp_size = world_size / tp_size`` replicas read different data; expert
parallelism spreads the experts over ``ep_size`` consecutive replicas (it splits the experts, not the
batch), so each expert has ``expert_dp_size = dp_size / ep_size`` data-parallel copies. Every size that
code derives from these three comes from here; nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidprism_ds.config.schema import ConfigError
from vidprism_ds.config.validation import check_ep_size


@dataclass(frozen=True)
class ParallelDims:
    world_size: int  # processes
    tp_size: int = 1  # parallel.tp_size
    ep_size: int = 1  # parallel.ep_size

    def __post_init__(self) -> None:
        world, tp, ep = self.world_size, self.tp_size, self.ep_size
        if world < 1:
            raise ValueError(f"world size must be >= 1, got {world}")
        if tp < 1 or world % tp:
            raise ConfigError(f"parallel.tp_size: {tp} does not divide the world size {world} (processes); "
                              f"choose a divisor of {world}")
        check_ep_size(ep)
        if tp == 1 and world % ep:
            raise ConfigError(f"parallel.ep_size: {ep} does not divide the world size {world} (processes); "
                              f"choose a divisor of {world}")
        if self.dp_size % ep:
            raise ConfigError(f"parallel.ep_size: {ep} does not divide the data-parallel size {self.dp_size} "
                              f"(world size {world} / parallel.tp_size {tp})")

    @property
    def dp_size(self) -> int:
        """Data-parallel size: the ranks that read different batches (the ranks of a TP group read one)."""
        return self.world_size // self.tp_size

    @property
    def expert_dp_size(self) -> int:
        """Data-parallel copies of each expert (the size of an expert-data-parallel group)."""
        return self.dp_size // self.ep_size

    def dp_size_names(self) -> tuple[str, str]:
        """What messages call the data-parallel size: (the size, its members)."""
        if self.tp_size == 1:
            return "world size", "processes"
        return (f"data-parallel size (world size {self.world_size} / parallel.tp_size {self.tp_size})",
                "data-parallel ranks")

    def dp_rank(self, rank: int) -> int:
        return rank // self.tp_size

    def tp_rank(self, rank: int) -> int:
        return rank % self.tp_size

    def ep_rank(self, rank: int) -> int:
        """Position in the EP group: EP groups are runs of ``ep_size`` consecutive data-parallel ranks."""
        return self.dp_rank(rank) % self.ep_size

    def expert_data_rank(self, rank: int) -> int:
        """Index among the data-parallel copies of this rank's experts (the TP ranks of one group hold the same
        experts with the same index)."""
        return self.dp_rank(rank) // self.ep_size
