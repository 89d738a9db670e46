"""The vision tower's block loop with gradient checkpointing chosen per block.

open_clip's ``Transformer`` recomputes either every block in backward or none
(``set_grad_checkpointing``). ``model.backbone.grad_checkpointing: blocks:K`` needs any number between:
checkpointing K of the 12 blocks of a ViT-B/16 frees K blocks' activations for one block's recompute
each. ``BlockStack`` replaces the tower's ``Transformer`` module and runs the same ``resblocks`` list
(the same module objects under the same names, so state dicts, the tensor-parallel layout and the
optimizer's parameters are unchanged) with a per-block flag.

Which blocks: the first K of those autograd records (all blocks when the tower trains, the last
``trainable_blocks`` with ``freeze=partial``). Every block keeps the same bytes, so which K does not change
the memory; the first ones are chosen as Megatron's "block" recompute method does, which keeps the
blocks closest to the loss (whose backward runs first) free of recompute.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class BlockStack(nn.Module):
    """Runs ``resblocks`` in order, recomputing those flagged in ``checkpointed`` in backward.

    Keeps the attributes of open_clip's ``Transformer`` that its ``VisionTransformer`` reads
    (``width``, ``layers``, ``batch_first``, ``grad_checkpointing``, ``get_cast_dtype``)."""

    def __init__(self, resblocks: nn.ModuleList, width: int, batch_first: bool):
        super().__init__()
        self.resblocks = resblocks
        self.width = width
        self.layers = len(resblocks)
        self.batch_first = batch_first
        self.checkpointed: list[bool] = [False] * len(resblocks)

    @classmethod
    def replacing(cls, transformer: nn.Module) -> BlockStack:
        """A stack over ``transformer``'s blocks, checkpointing as it did (all or none)."""
        stack = cls(transformer.resblocks, transformer.width, transformer.batch_first)
        stack.grad_checkpointing = bool(getattr(transformer, "grad_checkpointing", False))
        return stack

    @property
    def grad_checkpointing(self) -> bool:
        """True when any block recomputes (open_clip's flag; its setter flags all blocks or none)."""
        return any(self.checkpointed)

    @grad_checkpointing.setter
    def grad_checkpointing(self, enable: bool) -> None:
        self.checkpointed = [bool(enable)] * len(self.resblocks)

    def checkpoint_blocks(self, indices: Sequence[int]) -> None:
        """Recompute exactly the blocks at ``indices`` in backward."""
        chosen = set(indices)
        self.checkpointed = [i in chosen for i in range(len(self.resblocks))]

    def get_cast_dtype(self) -> torch.dtype:
        return self.resblocks[0].mlp.c_fc.weight.dtype

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.batch_first:
            x = x.transpose(0, 1).contiguous()  # NLD -> LND, as open_clip's Transformer does
        for block, recompute in zip(self.resblocks, self.checkpointed):
            if recompute and torch.is_grad_enabled():
                # open_clip's blocks take (q_x, k_x, v_x, attn_mask) positionally; non-reentrant like open_clip
                x = checkpoint(block, x, None, None, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask=attn_mask)
        if not self.batch_first:
            x = x.transpose(0, 1)
        return x


def use_block_stack(visual: nn.Module) -> BlockStack:
    """In place: ``visual.transformer`` (an open_clip ``Transformer``) becomes a ``BlockStack`` over the
    same blocks; returns it (the existing one when already replaced)."""
    if not isinstance(visual.transformer, BlockStack):
        visual.transformer = BlockStack.replacing(visual.transformer)
    return visual.transformer


__all__ = ["BlockStack", "use_block_stack"]
