"""Count the ATen operators a piece of code launches, and catch host synchronisations.

Used by the head benchmark and by the tests that pin the head's operator count and its freedom
from ``.item()``-style syncs (``aten._local_scalar_dense`` is what every tensor->Python read hits).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOST_SYNC_OPS = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.unique")


class OperatorCounter(TorchDispatchMode):
    """Context manager: ``with OperatorCounter() as ops: ...; ops.total, ops.counts``."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def host_syncs(self) -> dict[str, int]:
        return {name: n for name, n in self.counts.items() if name.startswith(HOST_SYNC_OPS)}


def count_fwd_bwd_ops(fn) -> OperatorCounter:
    """Run ``loss = fn()`` and ``loss.backward()`` under one counter."""
    with OperatorCounter() as ops:
        loss = fn()
        loss.backward()
    return ops
