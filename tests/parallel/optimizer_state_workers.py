"""Bodies of the topology-resume tests (run on every rank by harness.run_workers).

The saving run and every resumed run see the same global batch at each optimizer step: part 0 and part 1
of it, one per rank at world 2, accumulated in turn at world 1, and each on two ranks at world 4
(ranks 0 and 2 take part 0, 1 and 3 part 1: the world-mean gradient is the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch import nn

from tests.parallel.workers import build_head, head_loss
from vidprism_ds.parallel import init_expert_parallel, parallelize_model
from vidprism_ds.parallel.checkpoint import consolidated_state_dict
from vidprism_ds.parallel.optimizer_state import load_optimizer_state, save_optimizer_state
from vidprism_ds.train.checkpoint import CheckpointManager

PART_BATCH, FRAMES, DIM, CLASSES = 3, 16, 32, 5  # the head of tests.parallel.workers


def _part(step: int, part: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(20_000 * step + part)
    return torch.randn(PART_BATCH, FRAMES, DIM, generator=g) * 3, torch.randint(0, CLASSES, (PART_BATCH,), generator=g)


def _engine(ep_size: int, zero_stage: int, grad_accum: int, perturb: bool, bf16: bool = False):
    """The head at ``ep_size`` in DeepSpeed (AdamW, gradient clipping; optionally bf16 weights).
    ``perturb``: weights moved away from the saving run's start, so a weight the resume does not restore
    shows."""
    import deepspeed
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    ctx = init_expert_parallel(ep_size)
    head = build_head()
    if perturb:
        with torch.no_grad():
            for param in head.parameters():
                param.add_(torch.randn_like(param))
    parallelize_model(head, ctx)
    groups = split_params_into_different_moe_groups_for_optimizer(
        [{"params": list(head.parameters()), "weight_decay": 0.05, "name": "all"}])
    # eps above fp32 noise: see tests/parallel/workers.py engine_training
    optimizer = torch.optim.AdamW(groups, lr=3e-3, eps=1e-4)
    config = {"train_micro_batch_size_per_gpu": PART_BATCH, "gradient_accumulation_steps": grad_accum,
              "gradient_clipping": 0.5, "zero_allow_untested_optimizer": True, "bf16": {"enabled": bf16},
              "zero_optimization": {"stage": zero_stage, "contiguous_gradients": True}}
    engine, *_ = deepspeed.initialize(model=head, optimizer=optimizer, config=config)
    return engine, ctx


def _head_input_dtype(engine, x: torch.Tensor) -> torch.Tensor:
    return x.to(next(engine.module.parameters()).dtype)


def _optimizer_step(engine, step: int, parts: list[int]) -> None:
    for part in parts:
        x, y = _part(step, part)
        _, loss = head_loss(engine, _head_input_dtype(engine, x), y)
        engine.backward(loss)
        engine.step()


def _parts_of_rank(world_size: int, rank: int) -> list[int]:
    return [0, 1] if world_size == 1 else [rank % 2]


def save_at_world2_ep2(output_dir: str, steps: int) -> dict:
    """``steps`` optimizer steps, a checkpoint, then one more step: the step the resumed runs must equal."""
    rank = dist.get_rank()
    engine, ctx = _engine(ep_size=2, zero_stage=2, grad_accum=1, perturb=False)
    manager = CheckpointManager(output_dir, ctx, keep=2, config={}, log=lambda line: None)
    for step in range(steps):
        _optimizer_step(engine, step, [rank])
    tag_dir = manager.save(engine, steps, epoch=0, batches_in_epoch=steps)
    _optimizer_step(engine, steps, [rank])
    return {"tag_dir": str(tag_dir), "after_next_step": consolidated_state_dict(engine.module, ctx)}


def resume_and_step(output_dir: str, ep_size: int, zero_stage: int, probe_dir: str) -> dict:
    """Resume the saved run at this topology, write the restored state to ``probe_dir`` (to compare with
    the saved one), then take the next optimizer step on the same global batch."""
    world_size, rank = dist.get_world_size(), dist.get_rank()
    parts = _parts_of_rank(world_size, rank)
    engine, ctx = _engine(ep_size, zero_stage, grad_accum=len(parts), perturb=True)
    manager = CheckpointManager(output_dir, ctx, keep=2, config={}, log=lambda line: None)
    meta = manager.resume(engine)
    save_optimizer_state(engine, ctx, probe_dir)
    _optimizer_step(engine, meta.step, parts)
    return {"step": meta.step, "optimizer_restored": manager.optimizer_restored,
            "after_next_step": consolidated_state_dict(engine.module, ctx)}


@dataclass(frozen=True)
class RowHalves:
    """A tensor-parallel layout like ``tp_layout``: rows split evenly over the TP ranks."""

    full_name: str

    def shard(self, full: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        return full.chunk(size, dim=0)[rank].clone()

    def assemble(self, shards: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(shards, dim=0)


class TinyTensorParallel(nn.Module):
    """A row-sharded weight (named differently from its single-process name) and a replicated bias."""

    def __init__(self, rows: int):
        super().__init__()
        self.weight_shard = nn.Parameter(torch.zeros(rows, 3))
        self.bias = nn.Parameter(torch.zeros(3))


def full_tp_weight() -> torch.Tensor:
    return torch.arange(12, dtype=torch.float32).reshape(4, 3) / 10


def _tp_context(tp_size: int, tp_rank: int, tp_group):
    import dataclasses

    return dataclasses.replace(init_expert_parallel(1), tp_size=tp_size, tp_rank=tp_rank, tp_group=tp_group)


def save_and_load_tensor_parallel(ckpt_dir: str) -> dict:
    """2 processes as one TP group (plain AdamW, no ZeRO): one step, the consolidated files and export
    state on rank 0, and the state loaded back into a fresh TP=2 model."""
    rank = dist.get_rank()
    ctx = _tp_context(2, rank, dist.group.WORLD)
    layout = RowHalves("weight")
    model = TinyTensorParallel(rows=2)
    with torch.no_grad():
        model.weight_shard.copy_(layout.shard(full_tp_weight(), rank, 2))
    model.weight_shard.tp_layout = layout
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    # a gradient that differs per row, so moments assembled in the wrong order show
    (model.weight_shard.sum(dim=1) * torch.tensor([1.0, 2.0]) * (rank + 1)).sum().add(model.bias.sum()).backward()
    optimizer.step()
    engine = SimpleNamespace(module=model, optimizer=optimizer)
    save_optimizer_state(engine, ctx, ckpt_dir)
    exported = consolidated_state_dict(model, ctx)
    fresh = TinyTensorParallel(rows=2)
    fresh.weight_shard.tp_layout = layout
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    load_optimizer_state(SimpleNamespace(module=fresh, optimizer=fresh_optimizer), ctx, ckpt_dir)
    return {"exported": exported, "shard": {k: v.clone() for k, v in optimizer.state[model.weight_shard].items()},
            "weight_shard": model.weight_shard.detach().clone(), "loaded_weight": fresh.weight_shard.detach().clone(),
            "loaded_state": {k: v.clone() for k, v in fresh_optimizer.state[fresh.weight_shard].items()}}


def reload_on_one_process(ckpt_dir: str) -> dict:
    """ZeRO-2 with bf16 weights at world 1: two steps, the state saved, loaded into a second engine with
    other weights and saved again; then both take the same next step."""
    from pathlib import Path

    saving, ctx = _engine(ep_size=1, zero_stage=2, grad_accum=2, perturb=False, bf16=True)
    for step in range(2):
        _optimizer_step(saving, step, [0, 1])
    save_optimizer_state(saving, ctx, Path(ckpt_dir) / "saved")
    loading, _ = _engine(ep_size=1, zero_stage=2, grad_accum=2, perturb=True, bf16=True)
    restored_step = load_optimizer_state(loading, ctx, Path(ckpt_dir) / "saved")
    save_optimizer_state(loading, ctx, Path(ckpt_dir) / "restored")
    for engine in (saving, loading):
        _optimizer_step(engine, 2, [0, 1])
    return {"restored_step": restored_step, "dtype": str(next(loading.module.parameters()).dtype),
            "after_next_step": [consolidated_state_dict(e.module, ctx) for e in (saving, loading)]}
