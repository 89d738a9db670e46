"""Who sends which stream to which expert: the dispatcher, kept apart from the experts themselves.

The head builds one stream per rate and hands the list to a dispatcher together with its expert
modules. ``LocalDispatcher`` runs stream e through expert e in-process. The expert-parallel
dispatcher in ``vidprism_ds.parallel`` has the same interface, so the model code never changes when
experts move to other ranks.
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
