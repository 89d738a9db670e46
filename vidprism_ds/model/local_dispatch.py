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


class ExpertDispatcher(Protocol):
    def __call__(self, streams: list[torch.Tensor], experts: nn.ModuleDict) -> list[torch.Tensor]:
        """streams[e]: (B, L_e, D) for expert e -> expert outputs, same shapes."""


class LocalDispatcher:
    """Every expert lives in this process: stream e goes through ``experts[str(e)]``."""

    def __call__(self, streams: list[torch.Tensor], experts: nn.ModuleDict) -> list[torch.Tensor]:
        return [experts[str(e)](stream) for e, stream in enumerate(streams)]
