"""AdamW parameter groups, DeepSpeed's MoE split, and the warmup + cosine schedule."""

from __future__ import annotations

import math

import torch
from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer
from torch import nn

from vidprism_ds.config.schema import OptimConfig


# Embedding-like tensors with two or more dims that should not be pulled towards zero.
NO_DECAY_LEAVES = frozenset({"positional_embedding", "class_embedding", "pos_embed", "global_query", "logit_scale"})


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Norm weights and biases (all 1-D), scalars, positional/class embeddings and learned queries."""
    return param.ndim < 2 or name.rsplit(".", 1)[-1] in NO_DECAY_LEAVES


def param_groups(model: nn.Module, cfg: OptimConfig, backbone_prefix: str = "backbone.") -> list[dict]:
    """Backbone at lr * clip_ratio, the rest at lr; no decay on norms, biases, embeddings. Frozen
    parameters (requires_grad False) are left out. Expert parameters are then split into their own
    groups (DeepSpeed needs them apart to reduce and partition them over the expert-data group)."""
    buckets: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (name.startswith(backbone_prefix), no_weight_decay(name, param))
        buckets.setdefault(key, []).append(param)
    groups = []
    for (is_backbone, no_decay), params in sorted(buckets.items()):
        groups.append({
            "params": params,
            "name": f"{'backbone' if is_backbone else 'head'}_{'no_decay' if no_decay else 'decay'}",
            "lr": cfg.lr * (cfg.clip_ratio if is_backbone else 1.0),
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
        })
    return split_params_into_different_moe_groups_for_optimizer(groups)


def build_optimizer(groups: list[dict], cfg: OptimConfig, cpu_offload: bool = False,
                    fused: bool = False) -> torch.optim.Optimizer:
    """torch's AdamW; with ZeRO-Offload DeepSpeed's vectorised CPU AdamW (same update rule), which
    DeepSpeed requires there because a Python-loop optimizer on the CPU would dominate the step.
    ``fused`` (the trainer sets it on GPUs): torch's fused kernel, one launch for every tensor of a group
    instead of a few per tensor. It is not used on the CPU, where it would change the tested numerics."""
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cpu_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **kwargs)
    return torch.optim.AdamW(groups, fused=fused or None, **kwargs)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup from ~0 to 1 over ``warmup_steps``, then cosine to ``min_lr_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg.warmup_steps, cfg.min_lr_ratio))
