"""Dispatch between expert-parallel ranks: all-to-all of each expert's input streams to the rank that
owns the expert, and of the results back.

Same call as ``vidprism_ds.model.local_dispatch.LocalDispatcher``: ``inputs[e]`` is the (N_e, L_e, D)
batch for global expert e; the result is the matching list of outputs. The call is three steps, kept
apart as Megatron-core's token dispatchers keep them, so that communication can later overlap compute:
``dispatch`` (the exchange out), the owner running each of its experts once on the concatenated streams
of the whole EP group, and ``combine`` (the exchange back, into the caller's order).

Every rank of an EP group calls it with the same shapes (the loaders deliver equal batches per rank), so
all split sizes are known without communicating them. One ``all_to_all_single`` carries every stream out
and one carries the results back; split sizes differ per destination because streams differ in length.
Autograd flows through torch's functional ``all_to_all_single_autograd`` (its backward is the reverse
exchange).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd

from vidprism_ds.parallel.placement import ExpertPlacement


@dataclass
class DispatchedInputs:
    """This rank's experts' inputs after ``dispatch``: ``parts[slot][k]`` is the input of global expert
    ``experts[slot]`` from EP rank k; ``batch(slot)`` joins them along the batch in source-rank order.
    ``input_shapes[e]`` is the shape of expert e's input on each rank (the same on all of them)."""

    experts: list[int]
    parts: list[list[torch.Tensor]]
    input_shapes: list[torch.Size]

    def batch(self, slot: int) -> torch.Tensor:
        # joined when the expert runs, not all at once in dispatch: each batch is built right before the
        # expert reads it (about 4% of the EP=2 head's step on the CPU against joining them all first)
        parts = self.parts[slot]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class ExpertParallelDispatcher:
    def __init__(self, placement: ExpertPlacement, ep_group: dist.ProcessGroup, ep_rank: int):
        self.placement = placement
        self.ep_group = ep_group
        self.ep_rank = ep_rank
        self.ep_size = placement.ep_size
        self.experts_of_rank = [placement.local_experts(k) for k in range(self.ep_size)]

    def __call__(self, inputs: list[torch.Tensor], experts: nn.Module) -> list[torch.Tensor]:
        dispatched = self.dispatch(inputs)
        outputs = [experts[str(e)](dispatched.batch(slot)) for slot, e in enumerate(dispatched.experts)]
        return self.combine(dispatched, outputs)

    def _numel_per_rank(self, shapes: list[torch.Size], rank: int) -> int:
        return sum(shapes[e].numel() for e in self.experts_of_rank[rank])

    def dispatch(self, inputs: list[torch.Tensor]) -> DispatchedInputs:
        """Send every expert input to the rank that owns the expert; receive this rank's experts' inputs."""
        if len(inputs) != self.placement.num_experts:
            raise ValueError(f"got {len(inputs)} expert inputs for {self.placement.num_experts} experts")
        mine = self.experts_of_rank[self.ep_rank]
        shapes = [x.shape for x in inputs]
        if self.ep_size == 1:
            return DispatchedInputs(list(mine), [[inputs[e]] for e in mine], shapes)

        # Out: for each destination rank, the inputs of its experts in its slot order.
        send = torch.cat([inputs[e].reshape(-1) for k in range(self.ep_size) for e in self.experts_of_rank[k]])
        send_sizes = [self._numel_per_rank(shapes, k) for k in range(self.ep_size)]
        # In: from every source rank, the inputs of my experts (same shapes on every rank).
        mine_numel = self._numel_per_rank(shapes, self.ep_rank)
        received = all_to_all_single_autograd(send, [mine_numel] * self.ep_size, send_sizes, self.ep_group)

        # received = [source 0: e_a, e_b, ...][source 1: e_a, e_b, ...]...; regroup per expert.
        per_source = received.split([mine_numel] * self.ep_size)
        chunks_per_source = [src.split([shapes[e].numel() for e in mine]) for src in per_source]
        parts = [[chunks[slot].view(shapes[e]) for chunks in chunks_per_source] for slot, e in enumerate(mine)]
        return DispatchedInputs(list(mine), parts, shapes)

    def combine(self, dispatched: DispatchedInputs, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``outputs[slot]``: this rank's expert ``dispatched.experts[slot]`` run on ``dispatched.batch(slot)``.
        Returns every rank its own outputs, indexed by global expert like the inputs of ``dispatch``."""
        shapes = dispatched.input_shapes
        if self.ep_size == 1:
            by_expert: list[torch.Tensor] = [None] * len(shapes)  # type: ignore[list-item]
            for e, out in zip(dispatched.experts, outputs):
                by_expert[e] = out
            return by_expert

        # Each expert's output splits back into the sources' rows; send them back source by source.
        results_per_source: list[list[torch.Tensor]] = [[] for _ in range(self.ep_size)]
        for e, out_all in zip(dispatched.experts, outputs):
            for k, out in enumerate(out_all.split(shapes[e][0])):
                results_per_source[k].append(out.reshape(-1))
        back = torch.cat([t for per_k in results_per_source for t in per_k])
        mine_numel = self._numel_per_rank(shapes, self.ep_rank)
        send_sizes = [self._numel_per_rank(shapes, k) for k in range(self.ep_size)]
        returned = all_to_all_single_autograd(back, send_sizes, [mine_numel] * self.ep_size, self.ep_group)
        by_expert = [None] * len(shapes)  # type: ignore[list-item]
        offset = 0
        for k in range(self.ep_size):
            for e in self.experts_of_rank[k]:
                n = shapes[e].numel()
                by_expert[e] = returned[offset:offset + n].view(shapes[e])
                offset += n
        return by_expert
