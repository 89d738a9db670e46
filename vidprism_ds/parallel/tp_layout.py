"""How a tensor-parallel parameter is laid out, and the checks and state-dict conversions that need only
that (checkpoints, exports, the memory estimate): nothing here imports megatron-core, whose import costs
seconds and prints warnings, so a run with ``parallel.tp_size`` 1 never imports it
(``vidprism_ds.parallel.tensor_parallel`` builds the layers and says what ``tp_layout`` is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from vidprism_ds.config.schema import ConfigError
from vidprism_ds.model.backbone import TransformerBlock
from vidprism_ds.parallel.context import ParallelContext

TP_LAYOUT_ATTR = "tp_layout"


@dataclass(frozen=True)
class TensorParallelLayout:
    """How one parameter is split over the TP group.

    ``split_dim``: the dimension cut into ``size`` equal parts. ``packed``: how many equal blocks the
    full tensor stacks along ``split_dim`` that are split separately (3 for the packed q/k/v
    projection: each rank takes its heads' rows of q, of k and of v; 1 for a plain split)."""

    full_name: str  # the parameter's name in the tp_size 1 model's state dict
    local_name: str  # its name in the parallelised model (the suffix ``tp_full_name`` replaces)
    split_dim: int
    packed: int = 1

    def _blocks_view(self, tensor: torch.Tensor) -> torch.Tensor:
        shape = list(tensor.shape)
        shape[self.split_dim:self.split_dim + 1] = [self.packed, shape[self.split_dim] // self.packed]
        return tensor.reshape(shape)

    def shard(self, full: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        """This rank's part of ``full`` (a contiguous copy)."""
        blocks = self._blocks_view(full)
        return blocks.chunk(size, dim=self.split_dim + 1)[rank].reshape(
            _with_dim(full.shape, self.split_dim, full.shape[self.split_dim] // size)).contiguous()

    def assemble(self, shards: list[torch.Tensor]) -> torch.Tensor:
        """The full tensor from the shards of TP ranks 0..p-1 (the inverse of ``shard``)."""
        joined = torch.cat([self._blocks_view(s) for s in shards], dim=self.split_dim + 1)
        full_size = shards[0].shape[self.split_dim] * len(shards)
        return joined.reshape(_with_dim(shards[0].shape, self.split_dim, full_size))


def _with_dim(shape: torch.Size, dim: int, size: int) -> list[int]:
    changed = list(shape)
    changed[dim] = size
    return changed


def parameter_full_name(name: str, param: Optional[nn.Parameter]) -> str:
    """The tp_size 1 state-dict name of the parameter ``param`` named ``name`` here (``name`` itself when it
    is not sharded). A layout that records its ``local_name`` keeps any prefix ``name`` carries beyond it
    (e.g. DeepSpeed's ``module.``); one without it (any object with ``full_name``) gives ``full_name``."""
    layout = getattr(param, TP_LAYOUT_ATTR, None)
    if layout is None:
        return name
    local_name = getattr(layout, "local_name", None)
    if local_name and name.endswith(local_name):
        return name[:len(name) - len(local_name)] + layout.full_name
    return layout.full_name


def tp_full_name(model: nn.Module, local_name: str) -> str:
    """``parameter_full_name`` of ``model``'s parameter ``local_name`` (looked up by name)."""
    return parameter_full_name(local_name, dict(model.named_parameters()).get(local_name))


# Every parameter apply_tensor_parallel shards, by state-dict suffix: suffix in a tensor-parallel model ->
# (suffix at tp_size 1, split dimension, packed blocks). The layouts of the sharded layers are built from
# this table and a checkpoint written at one tp_size is re-assembled with it, so the two cannot disagree.
SHARDED_SUFFIXES: dict[str, tuple[str, int, int]] = {
    ".attn.qkv.weight": (".attn.in_proj_weight", 0, 3),
    ".attn.qkv.bias": (".attn.in_proj_bias", 0, 3),
    ".attn.out_proj.weight": (".attn.out_proj.weight", 1, 1),
    ".mlp.c_fc.weight": (".mlp.c_fc.weight", 0, 1),
    ".mlp.c_fc.bias": (".mlp.c_fc.bias", 0, 1),
    ".mlp.c_proj.weight": (".mlp.c_proj.weight", 1, 1),
}


def sharded_layout(block_name: str, tp_suffix: str) -> TensorParallelLayout:
    """The layout of the parameter ``block_name + tp_suffix`` (a key of ``SHARDED_SUFFIXES``)."""
    full_suffix, split_dim, packed = SHARDED_SUFFIXES[tp_suffix]
    return TensorParallelLayout((block_name + full_suffix).lstrip("."), (block_name + tp_suffix).lstrip("."),
                                split_dim, packed)


def check_tp_divides(blocks: list[TransformerBlock], tp_size: int) -> None:
    """tp_size must divide every block's heads and MLP width (each rank owns whole heads)."""
    for name, block in ((b.name, b.module) for b in blocks):
        heads, mlp_width = block.attn.num_heads, block.mlp.c_fc.out_features
        if heads % tp_size or mlp_width % tp_size:
            raise ConfigError(f"parallel.tp_size: {tp_size} does not divide the frame encoder's {heads} attention "
                              f"heads and MLP width {mlp_width} (block {name}); choose a common divisor")


def assemble_module_states(states_by_tp_rank: list[dict[str, torch.Tensor]],
                           full_shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The tp_size 1 state dict from a tensor-parallel model's state dicts, one per TP rank in rank order
    (DeepSpeed's ``mp_rank_XX_model_states.pt``). ``full_shapes``: the tp_size 1 model's shapes; a
    tensor whose shape already matches is replicated (e.g. an expert whose names end like a ViT block's)."""
    whole: dict[str, torch.Tensor] = {}
    for key, value in states_by_tp_rank[0].items():
        tp_suffix = next((suffix for suffix in SHARDED_SUFFIXES if key.endswith(suffix)), None)
        layout = None if tp_suffix is None else sharded_layout(key[:len(key) - len(tp_suffix)], tp_suffix)
        if layout is None or full_shapes.get(layout.full_name) == value.shape:
            whole[key] = value
            continue
        whole[layout.full_name] = layout.assemble([state[key] for state in states_by_tp_rank])
    return whole


def localise_module_state(model: nn.Module, whole: dict[str, torch.Tensor], ctx: ParallelContext) -> dict[str, torch.Tensor]:
    """A tp_size 1 state dict in ``model``'s layout: each sharded parameter cut to this TP rank's part."""
    local = dict(whole)
    for name, param in model.named_parameters():
        layout: Optional[TensorParallelLayout] = getattr(param, TP_LAYOUT_ATTR, None)
        full_name = parameter_full_name(name, param)
        if layout is not None and full_name in local:
            local[name] = layout.shard(local.pop(full_name), ctx.tp_rank, ctx.tp_size)
    return local
