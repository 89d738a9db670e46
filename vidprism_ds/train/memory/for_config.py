"""The estimate for a config on any world size, without its weights (``python -m vidprism_ds.train.memory``).

Parameters are counted on a model built on the meta device (no memory, any size); activations come from
shallow towers (``measure_shallow_profiles``); ``model.backbone.grad_checkpointing: auto`` is resolved
for the GPU memory given, as the trainer resolves it at start-up.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.config.validation import parse_checkpointing
from vidprism_ds.model.backbone import transformer_blocks
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.ds_config import DeepSpeedSettings
from vidprism_ds.train.memory.activations import ActivationProfile, _num_classes
from vidprism_ds.train.memory.checkpointing import (
    CheckpointingChoice,
    CheckpointingProfiles,
    auto_limit_bytes,
    choose_checkpointing,
    measure_shallow_profiles,
)
from vidprism_ds.train.memory.estimate import MemoryEstimate, estimate_peak_memory


def estimate_for_config(cfg: ExperimentConfig, ds_config: dict, world_size: int,
                        profiles: Optional[CheckpointingProfiles] = None,
                        device_bytes: Optional[float] = None) -> tuple[MemoryEstimate, Optional[CheckpointingChoice]]:
    """The estimate for ``cfg`` on ``world_size`` GPUs of ``device_bytes`` each, and, for
    ``grad_checkpointing: auto``, the choice behind it (None otherwise). ``profiles`` (from
    ``measure_shallow_profiles``; they do not depend on the world size: pass one for several) are divided
    by parallel.tp_size."""
    from vidprism_ds.model.build import build_experiment_model
    from vidprism_ds.model.video_model import has_experts
    from vidprism_ds.parallel.tp_layout import check_tp_divides
    from vidprism_ds.train.ds_config import resolve_ds_config

    dims = ParallelDims(world_size, cfg.parallel.tp_size, cfg.parallel.ep_size)
    resolved = resolve_ds_config(ds_config, cfg, dims, True, has_experts(cfg.model))
    with torch.device("meta"):
        model = build_experiment_model(cfg, _num_classes(cfg)).model
    check_tp_divides(transformer_blocks(model), dims.tp_size)
    profiles = profiles or measure_shallow_profiles(cfg, DeepSpeedSettings.read(resolved).dtype)

    def estimate_with(profile: ActivationProfile, blocks: int) -> MemoryEstimate:
        profile = dataclasses.replace(profile, tp_size=dims.tp_size)
        return estimate_peak_memory(model, cfg, resolved, dims, profile.per_frame, profile.head_per_step, blocks)

    policy = parse_checkpointing(cfg.model.backbone.grad_checkpointing)
    if policy.mode != "auto":
        blocks = policy.checkpointed_blocks(profiles.recorded_blocks)
        return estimate_with(profiles.for_blocks(blocks), blocks), None
    if device_bytes is None:
        raise ValueError("model.backbone.grad_checkpointing=auto: the GPU memory is needed to choose")
    choice = choose_checkpointing(profiles, estimate_with, auto_limit_bytes(cfg.train.memory_limit_fraction,
                                                                          device_bytes))
    return choice.estimate, choice


__all__ = ["estimate_for_config"]
