"""Dispatch between expert-parallel ranks: all-to-all of each expert's input streams to the rank that
owns the expert, and of the results back.

Same interface as ``vidprism_ds.model.local_dispatch.LocalDispatcher``: ``inputs[e]`` is the (N_e, L_e, D)
batch for global expert e; the result is the matching list of outputs. Every rank of an EP group calls it
with the same shapes (the loaders deliver equal batches per rank), so all split sizes are known without
communicating them. One ``all_to_all_single`` carries every stream out and one carries the results back;
split sizes differ per destination because streams differ in length. The owner runs each expert once on
the concatenated streams of the whole EP group. Autograd flows through
torch's functional ``all_to_all_single_autograd`` (its backward is the reverse exchange).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd

from vidprism_ds.parallel.placement import ExpertPlacement


class ExpertParallelDispatcher:
    def __init__(self, placement: ExpertPlacement, ep_group: dist.ProcessGroup, ep_rank: int):
        self.placement = placement
        self.ep_group = ep_group
        self.ep_rank = ep_rank
        self.ep_size = placement.ep_size
        self.experts_of_rank = [placement.local_experts(k) for k in range(self.ep_size)]

    def __call__(self, inputs: list[torch.Tensor], experts: nn.Module) -> list[torch.Tensor]:
        if len(inputs) != self.placement.num_experts:
            raise ValueError(f"got {len(inputs)} expert inputs for {self.placement.num_experts} experts")
        mine = self.experts_of_rank[self.ep_rank]
        if self.ep_size == 1:
            return [experts[str(e)](inputs[e]) for e in mine]

        # Out: for each destination rank, the inputs of its experts in its slot order.
        send = torch.cat([inputs[e].reshape(-1) for k in range(self.ep_size) for e in self.experts_of_rank[k]])
        send_sizes = [sum(inputs[e].numel() for e in self.experts_of_rank[k]) for k in range(self.ep_size)]
        # In: from every source rank, the inputs of my experts (same shapes on every rank).
        mine_numel = sum(inputs[e].numel() for e in mine)
        received = all_to_all_single_autograd(send, [mine_numel] * self.ep_size, send_sizes, self.ep_group)

        # received = [source 0: e_a, e_b, ...][source 1: e_a, e_b, ...]...; regroup per expert.
        per_source = received.split([mine_numel] * self.ep_size)
        chunks_per_source = [src.split([inputs[e].numel() for e in mine]) for src in per_source]
        results_per_source: list[list[torch.Tensor]] = [[] for _ in range(self.ep_size)]
        for slot, e in enumerate(mine):
            shape = inputs[e].shape
            batch_all = torch.cat([chunks[slot].view(shape) for chunks in chunks_per_source])
            out_all = experts[str(e)](batch_all)
            for k, out in enumerate(out_all.split(shape[0])):
                results_per_source[k].append(out.reshape(-1))

        back = torch.cat([t for per_k in results_per_source for t in per_k])
        returned = all_to_all_single_autograd(back, send_sizes, [mine_numel] * self.ep_size, self.ep_group)
        outputs: list[torch.Tensor] = [None] * len(inputs)  # type: ignore[list-item]
        offset = 0
        for k in range(self.ep_size):
            for e in self.experts_of_rank[k]:
                n = inputs[e].numel()
                outputs[e] = returned[offset:offset + n].view(inputs[e].shape)
                offset += n
        return outputs
