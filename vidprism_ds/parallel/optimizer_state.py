"""Optimizer state saved per parameter with single-process names, so a resume at another world size,
``ep_size`` or ``tp_size`` continues with the same fp32 master weights, Adam moments and step count.

DeepSpeed's own optimizer files hold flat ZeRO partitions laid out for the topology that wrote them, and
its universal checkpoint (``deepspeed/checkpoint/ds_to_universal.py``) merges parameters by name across
ranks: the experts of ``LocalExpertShard`` are all named ``deepspeed_moe.experts.deepspeed_experts.<slot>``
on every expert-parallel rank while the balanced placement puts different experts in the same slot, and its
expert slicing assumes DeepSpeed's contiguous numbering (``ep_rank * E/P + slot``). So this format is ours
(docs/parallel.md#checkpoints). Each parameter's full fp32 master and moments are assembled with DeepSpeed's
public tensor-fragment API (``safe_get_full_fp32_param`` and friends: ZeRO-1/2 and the bf16 optimizer),
or read directly when no ZeRO optimizer partitions them. Files, under a checkpoint tag:

    optimizer/shared_<rank>.pt   the non-expert parameters this rank wrote (each parameter in one file)
    optimizer/expert_<id>.pt     one per global expert, keys relative to the expert (as experts/expert_<id>.pt)

each ``{"step": optimizer steps, "params": {name: {"fp32", "exp_avg", "exp_avg_sq"}}}`` (moments absent for a
parameter the optimizer has not stepped yet). Writers are spread over the ranks so no rank holds more than
its share of the 3x-the-model state; every file is written atomically.

Tensor parallelism: a parameter carrying ``tp_layout`` (``full_name``, ``shard(full, rank, size)``,
``assemble(shards)``) is gathered over ``ctx.tp_group`` and saved whole under ``full_name``; loading slices
it for this TP rank.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from deepspeed.utils import (safe_get_full_fp32_param, safe_get_full_optimizer_state, safe_set_full_fp32_param,
                             safe_set_full_optimizer_state)
from torch import nn

from vidprism_ds.parallel import deepspeed_private
from vidprism_ds.parallel.apply import find_expert_head
from vidprism_ds.parallel.context import ParallelContext
from vidprism_ds.parallel.tp_layout import parameter_full_name
from vidprism_ds.utils.files import atomic_torch_save

OPTIMIZER_DIR = "optimizer"
MOMENT_KEYS = ("exp_avg", "exp_avg_sq")  # Adam/AdamW (torch's, and DeepSpeed's CPU Adam under ZeRO-Offload)


def shared_state_file(ckpt_dir: str | os.PathLike, writer_rank: int) -> Path:
    return Path(ckpt_dir) / OPTIMIZER_DIR / f"shared_{writer_rank:05d}.pt"


def expert_state_file(ckpt_dir: str | os.PathLike, expert_id: int) -> Path:
    return Path(ckpt_dir) / OPTIMIZER_DIR / f"expert_{expert_id:03d}.pt"


def has_optimizer_state(ckpt_dir: str | os.PathLike) -> bool:
    return any((Path(ckpt_dir) / OPTIMIZER_DIR).glob("shared_*.pt"))


def base_optimizer(engine_optimizer) -> torch.optim.Optimizer:
    """The torch-style optimizer holding the state: ZeRO and the bf16 optimizer wrap it as ``.optimizer``."""
    return getattr(engine_optimizer, "optimizer", engine_optimizer)


def optimizer_step_count(optimizer: torch.optim.Optimizer) -> Optional[int]:
    """Steps taken (every parameter group steps together); None before the first step."""
    for state in optimizer.state.values():
        if "step" in state:
            return int(state["step"])
    return None


def _split_parameters(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[int, nn.Module]]]:
    """(non-expert (name, parameter) pairs in model order, this rank's (expert id, expert) pairs)."""
    head = find_expert_head(model)
    experts = [(int(e), expert) for e, expert in head.experts.items()] if head is not None else []
    expert_params = {id(p) for _, expert in experts for p in expert.parameters()}
    shared = [(name, p) for name, p in model.named_parameters() if id(p) not in expert_params]
    return shared, experts


def _is_partitioned(param: nn.Parameter) -> bool:
    # set on every parameter DeepSpeed's ZeRO-1/2 or bf16 optimizer manages (None where this rank
    # holds no fragment of it)
    return hasattr(param, "_hp_mapping")


def _full_state(param: nn.Parameter, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """fp32 master and moments of this process's copy of ``param``, whole (after the first optimizer step).
    Collective over the parameter's ZeRO partition group when partitioned."""
    if _is_partitioned(param):
        state = {"fp32": safe_get_full_fp32_param(param)}
        state.update({key: safe_get_full_optimizer_state(param, key) for key in MOMENT_KEYS})
    else:
        own = optimizer.state.get(param, {})
        state = {"fp32": param.detach()}
        state.update({key: own[key] for key in MOMENT_KEYS if key in own})
    return {key: value.detach().to("cpu", torch.float32, copy=True) for key, value in state.items()}


def assemble_tp(local: torch.Tensor, layout, ctx: ParallelContext) -> torch.Tensor:
    """The whole tensor of a tensor-parallel parameter from every TP rank's shard (collective over
    ``ctx.tp_group``; every TP rank gets it)."""
    shards = [torch.empty_like(local) for _ in range(ctx.tp_size)]
    dist.all_gather(shards, local.contiguous(), group=ctx.tp_group)
    return layout.assemble(shards)


def _tp_assembled(param: nn.Parameter, state: dict[str, torch.Tensor], ctx: ParallelContext) -> dict[str, torch.Tensor]:
    layout = getattr(param, "tp_layout", None)
    if layout is None or ctx.tp_size == 1:
        return state
    return {key: assemble_tp(local, layout, ctx) for key, local in state.items()}


def _shared_states(model: nn.Module, ctx: ParallelContext, optimizer) -> Iterator[tuple[int, str, dict]]:
    """(writer rank, single-process name, whole state) of every non-expert parameter, in the same order on
    every rank: each parameter is assembled by every rank (collectives), and kept only by its writer."""
    shared, _ = _split_parameters(model)
    for index, (name, param) in enumerate(shared):
        state = _tp_assembled(param, _full_state(param, optimizer), ctx)
        yield index % ctx.world_size, parameter_full_name(name, param), state


def save_optimizer_state(engine, ctx: ParallelContext, ckpt_dir: str | os.PathLike) -> list[Path]:
    """Collective: every rank calls it. Writes this rank's share of the consolidated optimizer state
    (none before the first optimizer step, or for an engine without optimizer: nothing to carry).
    Returns the files written here."""
    if getattr(engine, "optimizer", None) is None:
        return []
    model, optimizer = engine.module, base_optimizer(engine.optimizer)
    step = optimizer_step_count(optimizer)
    stepped = step is not None
    if ctx.world_size > 1:  # every rank takes the same path through the collectives below
        flag = torch.tensor([int(stepped)])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        stepped = bool(flag.item())
    if not stepped:
        return []
    if any(_is_partitioned(p) for p in model.parameters()):
        deepspeed_private.link_state_fragments(engine.optimizer)
    mine = {name: state for writer, name, state in _shared_states(model, ctx, optimizer) if writer == ctx.rank}
    written = [shared_state_file(ckpt_dir, ctx.rank)]
    atomic_torch_save({"step": step, "params": mine}, written[0])
    _, experts = _split_parameters(model)
    writes_experts = ctx.expert_data_rank == 0 and ctx.tp_rank == 0  # the first replica of each owner
    for expert_id, expert in experts:
        states = {name: _full_state(p, optimizer) for name, p in expert.named_parameters()}
        if writes_experts:
            path = expert_state_file(ckpt_dir, expert_id)
            atomic_torch_save({"step": step, "params": states}, path)
            written.append(path)
    return written


def read_shared_states(ckpt_dir: str | os.PathLike) -> tuple[int, dict[str, dict[str, torch.Tensor]]]:
    """(step, every non-expert parameter's state by single-process name), memory-mapped: only what a rank
    loads into its parameters is read from disk."""
    step, states = 0, {}
    for path in sorted((Path(ckpt_dir) / OPTIMIZER_DIR).glob("shared_*.pt")):
        piece = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        step = piece["step"]
        states.update(piece["params"])
    return step, states


def read_expert_states(ckpt_dir: str | os.PathLike, expert_id: int) -> dict[str, dict[str, torch.Tensor]]:
    path = expert_state_file(ckpt_dir, expert_id)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_dir} has no optimizer state for expert {expert_id} ({path})")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["params"]


def _step_value(optimizer: torch.optim.Optimizer, step: int):
    # torch's Adam keeps the step as a tensor, DeepSpeed's CPU Adam (ZeRO-Offload) as an int
    return torch.tensor(float(step)) if type(optimizer).__module__.startswith("torch.optim") else step


def _initialise_partitioned_state(engine_optimizer, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Give ZeRO's (or the bf16 optimizer's) flat fp32 partitions their Adam state at ``step``, zero moments
    where none exists yet (torch's Adam creates it at the first step), and link the parameters' fragments
    to it: the fragments are overwritten next."""
    for group in optimizer.param_groups:
        for flat in group["params"]:
            state = optimizer.state[flat]
            state["step"] = _step_value(optimizer, step)
            for key in MOMENT_KEYS:
                state.setdefault(key, torch.zeros_like(flat))
    deepspeed_private.link_state_fragments(engine_optimizer)


def _restore(param: nn.Parameter, whole: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
             ctx: ParallelContext, step: int) -> None:
    layout = getattr(param, "tp_layout", None)
    if layout is not None and ctx.tp_size > 1:
        whole = {key: layout.shard(value, ctx.tp_rank, ctx.tp_size) for key, value in whole.items()}
    if tuple(whole["fp32"].shape) != tuple(param.shape):
        raise RuntimeError(f"optimizer state of shape {tuple(whole['fp32'].shape)} for a parameter of shape "
                           f"{tuple(param.shape)}: the checkpoint was written by another model")
    with torch.no_grad():
        param.copy_(whole["fp32"].to(param.dtype))  # the working copy the forward uses
    if _is_partitioned(param):
        safe_set_full_fp32_param(param, whole["fp32"].to(param.device))
        for key in MOMENT_KEYS:
            if key in whole:
                safe_set_full_optimizer_state(param, whole[key].to(param.device), key)
    elif all(key in whole for key in MOMENT_KEYS) and param.requires_grad:
        optimizer.state[param] = {"step": _step_value(optimizer, step),
                                  **{key: whole[key].to(param.device, copy=True) for key in MOMENT_KEYS}}


def load_optimizer_state(engine, ctx: ParallelContext, ckpt_dir: str | os.PathLike) -> Optional[int]:
    """Restore every parameter's fp32 master, moments and the step count from the consolidated files,
    whatever topology wrote them; the step restored, or None when the checkpoint has none. No collectives."""
    if not has_optimizer_state(ckpt_dir):
        return None
    model, optimizer = engine.module, base_optimizer(engine.optimizer)
    step, shared_states = read_shared_states(ckpt_dir)
    shared, experts = _split_parameters(model)
    if any(_is_partitioned(p) for p in model.parameters()):
        _initialise_partitioned_state(engine.optimizer, optimizer, step)
    missing = [parameter_full_name(name, p) for name, p in shared if parameter_full_name(name, p) not in shared_states]
    if missing:
        raise RuntimeError(f"checkpoint {ckpt_dir} has no optimizer state for {missing[:5]}: written by another model?")
    for name, param in shared:
        _restore(param, shared_states[parameter_full_name(name, param)], optimizer, ctx, step)
    for expert_id, expert in experts:
        states = read_expert_states(ckpt_dir, expert_id)
        for name, param in expert.named_parameters():
            _restore(param, states[name], optimizer, ctx, step)
    return step
