"""Count the ATen operators a piece of code launches, and catch host synchronisations.

Used by the head benchmark and by the tests that pin the head's operator count and its freedom
from ``.item()``-style syncs (``aten._local_scalar_dense`` is what every tensor->Python read hits).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
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


# Tensor methods that hand a value to Python: on a GPU each one waits for every queued kernel.
HOST_READ_METHODS = frozenset({"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy", "cpu"})
# Operators whose output shape depends on the data: the host must read a count back before going on.
DATA_DEPENDENT_OPS = ("aten.nonzero", "aten.masked_select", "aten.unique")


class _HostReadMode(TorchFunctionMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READ_METHODS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def _is_boolean_index(func, args) -> bool:
    """``x[mask]`` / ``x[mask] = v`` with a bool mask: the result's size is the mask's count."""
    if str(func.overloadpacket) not in ("aten.index", "aten.index_put", "aten.index_put_"):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in indices)


class _DataDependentOpMode(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name.startswith(DATA_DEPENDENT_OPS):
            self.counts[name] += 1
        elif _is_boolean_index(func, args):
            self.counts[f"{name} (boolean mask)"] += 1
        return func(*args, **(kwargs or {}))


class HostSyncCounter:
    """Counts the places where the host would wait for the device, on any device (the CPU included).

    Two levels, because neither sees everything: Python reads of tensor values (``item``, ``tolist``,
    ``float()``, ``bool()``, ``.cpu()``, ``.numpy()``) at the torch-function level, where ``tolist`` of a
    CPU tensor never reaches the dispatcher; and data-dependent-shape operators (``nonzero``,
    ``masked_select``, ``unique``: boolean-mask indexing is one) at the dispatch level. Counters nest:
    an inner one counts its part, the outer one counts everything.
    """

    def __init__(self):
        self.python_reads: Counter[str] = Counter()
        self.data_dependent_ops: Counter[str] = Counter()
        self._ops = _DataDependentOpMode(self.data_dependent_ops)
        self._reads = _HostReadMode(self.python_reads)

    def __enter__(self) -> "HostSyncCounter":
        self._ops.__enter__()
        self._reads.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._reads.__exit__(*exc)
        self._ops.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.python_reads.values()) + sum(self.data_dependent_ops.values())

    def summary(self) -> dict:
        return {"total": self.total, "python_reads": dict(self.python_reads),
                "data_dependent_ops": dict(self.data_dependent_ops)}
