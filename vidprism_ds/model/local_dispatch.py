"""Dispatch inside one process: every expert input goes to an expert held by this process.

The head builds one input per expert and hands the list to a dispatcher together with its expert
modules, so which process runs an expert is kept apart from what the expert computes.
``LocalDispatcher`` runs input e through expert e here. The dispatcher that exchanges inputs between
expert-parallel ranks (``vidprism_ds.parallel.expert_parallel_dispatch``) has the same interface, so
the model code never changes when experts move to other ranks.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from vidprism_ds.model.batched_experts import batched_experts_forward, can_batch


class ExpertDispatcher(Protocol):
    def __call__(self, streams: list[torch.Tensor], experts: nn.ModuleDict) -> list[torch.Tensor]:
        """streams[e]: (B, L_e, D) for expert e -> expert outputs, same shapes."""


class LocalDispatcher:
    """Every expert lives in this process: stream e goes through ``experts[str(e)]``, all of them in one
    batched computation when they can be (``batched_experts.py``: same layout, same number of streams)."""

    def __call__(self, streams: list[torch.Tensor], experts: nn.ModuleDict) -> list[torch.Tensor]:
        modules = [experts[str(e)] for e in range(len(streams))]
        if can_batch(modules, streams):
            return batched_experts_forward(modules, streams)
        return [module(stream) for module, stream in zip(modules, streams)]
