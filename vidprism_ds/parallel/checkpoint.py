"""Expert weights saved per global expert, so a checkpoint loads at any world size and ``ep_size``.

Files: ``<ckpt_dir>/experts/expert_<id:03d>.pt``, each the state dict of one ``TemporalExpert`` (keys
relative to the expert), written by the first replica of its owner (expert-data-parallel rank 0),
atomically (temporary name, then rename). ``consolidated_state_dict`` gathers every expert to rank 0 and
returns a plain state dict with the single-process parameter names (``head.experts.<id>.…``; a
tensor-parallel parameter gathered over the TP group under its ``tp_layout.full_name``), loadable into
``build_video_model`` without DeepSpeed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from vidprism_ds.parallel.apply import find_expert_head
from vidprism_ds.parallel.context import ParallelContext
from vidprism_ds.parallel.expert_shard import LocalExpertShard
from vidprism_ds.parallel.optimizer_state import assemble_tp
from vidprism_ds.parallel.tp_layout import assemble_module_states, localise_module_state, parameter_full_name
from vidprism_ds.utils.files import atomic_torch_save

EXPERT_DIR = "experts"


def expert_file(ckpt_dir: str | os.PathLike, expert_id: int) -> Path:
    return Path(ckpt_dir) / EXPERT_DIR / f"expert_{expert_id:03d}.pt"


def _local_experts(model: nn.Module) -> list[tuple[int, nn.Module]]:
    head = find_expert_head(model)
    if head is None:
        return []
    return [(int(e), expert) for e, expert in head.experts.items()]


def _experts_prefix(model: nn.Module) -> str:
    head = find_expert_head(model)
    for name, module in model.named_modules():
        if module is head:
            return f"{name}.experts." if name else "experts."
    raise RuntimeError("expert head not found")


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_expert_files(model: nn.Module, ctx: ParallelContext, ckpt_dir: str | os.PathLike) -> list[Path]:
    """Every rank calls this; the first replica of each expert writes it. Returns the files written here."""
    written = []
    if ctx.expert_data_rank != 0:
        return written
    for expert_id, expert in _local_experts(model):
        path = expert_file(ckpt_dir, expert_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(_cpu_state(expert), path)
        written.append(path)
    return written


def load_expert_files(model: nn.Module, ckpt_dir: str | os.PathLike) -> list[int]:
    """Load this process's experts (whatever the EP size the files were written at)."""
    loaded = []
    for expert_id, expert in _local_experts(model):
        path = expert_file(ckpt_dir, expert_id)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {ckpt_dir} has no file for expert {expert_id} ({path}); "
                                    f"was it written by a model with the same experts?")
        expert.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        loaded.append(expert_id)
    return loaded


def _assemble_tp_parameters(model: nn.Module, ctx: Optional[ParallelContext], state: dict[str, torch.Tensor]) -> None:
    """In place: every tensor-parallel shard in ``state`` replaced by the whole tensor under its
    single-process name (collective over the TP group)."""
    if ctx is None or ctx.tp_size == 1:
        return
    for name, param in model.named_parameters():
        layout = getattr(param, "tp_layout", None)
        if layout is not None and name in state:
            state[parameter_full_name(name, param)] = assemble_tp(state.pop(name), layout, ctx)


def consolidated_state_dict(model: nn.Module, ctx: Optional[ParallelContext]) -> Optional[dict[str, torch.Tensor]]:
    """Full fp32 state dict with single-process names on rank 0 (None on other ranks).

    Collective: every rank must call it. Non-expert weights are identical on every rank after a step
    (DeepSpeed all-reduces them), so rank 0's copy is taken.
    """
    prefix = _experts_prefix(model) if find_expert_head(model) is not None else None
    head = find_expert_head(model)
    sharded = head is not None and isinstance(head.experts, LocalExpertShard)
    shard_name = f"{prefix}deepspeed_moe." if sharded else None
    state = {k: v.detach().to("cpu", torch.float32, copy=True)
             for k, v in model.state_dict().items() if not (shard_name and k.startswith(shard_name))}
    _assemble_tp_parameters(model, ctx, state)
    if not sharded:
        return state if ctx is None or ctx.rank == 0 else None

    mine = {}
    if ctx.expert_data_rank == 0:
        for expert_id, expert in _local_experts(model):
            for k, v in _cpu_state(expert).items():
                mine[f"{prefix}{expert_id}.{k}"] = v.float()
    if ctx.world_size == 1:
        state.update(mine)
        return state
    gathered = [None] * ctx.world_size if ctx.rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if ctx.rank != 0:
        return None
    for part in gathered:
        state.update(part)
    return state


def deepspeed_module_file(ckpt_tag_dir: str | os.PathLike) -> Path:
    """DeepSpeed's non-expert module weights in a checkpoint tag directory (ZeRO-1/2 layout)."""
    return Path(ckpt_tag_dir) / "mp_rank_00_model_states.pt"


def _module_state_at_tp1(model: nn.Module, ckpt_tag_dir: Path) -> dict[str, torch.Tensor]:
    """DeepSpeed's non-expert module weights in the tp_size 1 layout: one ``mp_rank_XX`` file per TP rank
    of the saving run, assembled when there are several."""
    files = sorted(ckpt_tag_dir.glob("mp_rank_*_model_states.pt"))
    if not files:
        raise FileNotFoundError(f"{deepspeed_module_file(ckpt_tag_dir)} not found: not a DeepSpeed ZeRO-1/2 "
                                f"checkpoint directory")
    # weights_only: a checkpoint never runs code. DeepSpeed's file also stores plain metadata.
    states = [torch.load(f, map_location="cpu", weights_only=True)["module"] for f in files]
    if len(states) == 1:
        return states[0]
    if all(not hasattr(param, "tp_layout") for param in model.parameters()):  # this model is tp_size 1
        full_shapes = {name: param.shape for name, param in model.named_parameters()}
    else:  # its shapes are shards: the tp_size 1 shapes are unknown here, the suffix rule decides alone
        full_shapes = {}
    return assemble_module_states(states, full_shapes)


def load_module_weights(model: nn.Module, ckpt_tag_dir: str | os.PathLike, ctx: Optional[ParallelContext] = None) -> None:
    """Load a DeepSpeed checkpoint's weights into ``model`` at any world size, ``ep_size`` and ``tp_size``.

    Non-expert weights come from DeepSpeed's module files (which hold no expert weights for MoE models;
    one per tensor-parallel rank), experts from the per-expert files. Optimizer state is not touched.
    ``ctx`` is needed when ``model`` is tensor-parallel (its TP rank picks the shards).
    """
    module_state = _module_state_at_tp1(model, Path(ckpt_tag_dir))
    if ctx is not None and ctx.tp_size > 1:
        module_state = localise_module_state(model, module_state, ctx)
    expected_missing = {k for k in model.state_dict() if ".deepspeed_moe." in k}
    missing, unexpected = model.load_state_dict(module_state, strict=False)
    if set(missing) - expected_missing or unexpected:
        raise RuntimeError(f"checkpoint {ckpt_tag_dir} does not match the model: missing "
                           f"{sorted(set(missing) - expected_missing)[:5]}, unexpected {unexpected[:5]}")
    load_expert_files(model, ckpt_tag_dir)
