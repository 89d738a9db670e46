"""This rank's experts, in the container DeepSpeed recognises as an expert-parallel layer.

DeepSpeed's engine and ZeRO optimizer switch on their MoE handling (expert gradients reduced over the
expert-data-parallel group only, expert optimizer state partitioned there, per-expert checkpoint files)
when they find an instance of ``deepspeed.moe.layer.MoE`` in the model. VidPrism's experts are not
DeepSpeed's homogeneous gated FFN experts, so this subclass deliberately skips ``MoE.__init__`` (which
would build a gate and copies of one expert) and provides only what the engine reads: ``num_experts``,
``ep_size``, ``expert_group_name``, ``num_local_experts`` and the parameter path
``deepspeed_moe.experts.deepspeed_experts.<slot>`` that its checkpoint code renames per global expert.
That list is ``deepspeed_private.MOE_ATTRIBUTES_READ_BY_ENGINE`` and ``MOE_LOCAL_EXPERTS_PATH``;
tests/parallel/test_deepspeed_private.py checks it against the installed DeepSpeed.

DeepSpeed numbers an expert file by ``ep_rank * num_local_experts + slot``; with the balanced placement
that "slot id" is not the VidPrism expert id, so those files are only reused at the same ``ep_size``.
``vidprism_ds.parallel.checkpoint`` writes files keyed by the true expert id for any other topology.
"""

from __future__ import annotations

from deepspeed.moe.layer import MoE
from torch import nn

from vidprism_ds.parallel.placement import ExpertPlacement


class _Holder(nn.Module):
    """Gives the parameters DeepSpeed's expected path."""


class LocalExpertShard(MoE):
    def __init__(self, local_experts: dict[int, nn.Module], placement: ExpertPlacement, group_name: str):
        nn.Module.__init__(self)  # not MoE.__init__: see the module docstring
        self.num_experts = placement.num_experts
        self.ep_size = placement.ep_size
        self.expert_group_name = group_name
        self.num_local_experts = placement.num_local_experts
        self.global_ids = sorted(local_experts)
        self._slot_of = {e: slot for slot, e in enumerate(self.global_ids)}
        self.deepspeed_moe = _Holder()
        self.deepspeed_moe.experts = _Holder()
        self.deepspeed_moe.experts.deepspeed_experts = nn.ModuleList([local_experts[e] for e in self.global_ids])

    def __getitem__(self, global_id: str) -> nn.Module:
        return self.deepspeed_moe.experts.deepspeed_experts[self._slot_of[int(global_id)]]

    def __contains__(self, global_id: str) -> bool:
        return int(global_id) in self._slot_of

    def items(self):
        """(global id, expert) pairs, like the ``nn.ModuleDict`` this replaces."""
        return [(str(e), self[str(e)]) for e in self.global_ids]

    def set_deepspeed_parallelism(self, use_data_before_expert_parallel_: bool = False) -> None:
        """Called by the engine at start-up. The groups already exist (``init_expert_parallel`` made them
        with DeepSpeed's default layout, which the dispatcher was given); the other layout would
        disagree with them."""
        if use_data_before_expert_parallel_:
            raise ValueError("ds_config use_data_before_expert_parallel_=true is not supported: expert groups "
                             "are created by vidprism_ds.parallel.init_expert_parallel with the default layout")

    def forward(self, *args, **kwargs):
        raise RuntimeError("experts are called through the head's dispatcher, not as one layer")
