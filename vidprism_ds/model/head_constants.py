"""Constant index tensors and matrices of the head, built once per layout and reused.

The packed head computes with constant masks, interpolation and scatter matrices whose shapes depend on
the clip length (T varies between training, evaluation and tests), so they cannot be registered once as
buffers of a fixed shape. ``ConstantCache`` builds them on first use for a (layout, device, dtype) key
and hands the same tensors back afterwards: an eager forward launches no operator to rebuild them.
Under torch.compile the builder runs inside the trace instead (its ops are folded into the graph), so
the cache, a plain dict mutated at run time, never meets Dynamo.
"""

from __future__ import annotations

from typing import Callable, Hashable

import torch


class ConstantCache:
    def __init__(self):
        self._built: dict[Hashable, object] = {}

    def get(self, key: Hashable, build: Callable[[], object]) -> object:
        if torch.compiler.is_compiling():
            return build()
        if key not in self._built:
            with torch.no_grad():
                self._built[key] = build()
        return self._built[key]


class _StackParameters(torch.autograd.Function):
    """``torch.stack`` whose backward is one ``unbind``: autograd's own stack backward selects each slice
    with its own operator, one launch per stacked parameter on every backward."""

    @staticmethod
    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        return torch.stack(tensors)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad_stacked: torch.Tensor):
        return grad_stacked.unbind(0)


def stack_parameters(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The same tensors stacked along a new first dim (the per-expert / per-rate weights of a batched
    computation); the parameters themselves stay separate, so state-dict keys do not change."""
    return _StackParameters.apply(*tensors)
