"""``model.backbone.grad_checkpointing: auto``: the fastest checkpointing that the estimate fits.

Recomputing a block in backward costs one more forward of it (about a third of its training FLOPs);
keeping its activations costs memory. ``auto`` tries, in order of speed, no block recomputed, then 1, 2,
... of the blocks that train, then all of them, and takes the first whose estimated peak is within
``train.memory_limit_fraction`` of the device (``vidprism_ds.train.memory.fit.check_fits``' limit). When
not even full checkpointing fits, it takes full and the memory check then fails naming the other knobs.

One measurement with no block checkpointed and one with all of them give every count in between
exactly: each block keeps either its full activations or only its input, whatever the others do, so the
saved bytes are linear in the count (``CheckpointingProfiles.for_blocks``); the recompute working set is
one block whenever any block is checkpointed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.config.validation import CheckpointingPolicy
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.memory.activations import (
    ActivationProfile,
    measure_activations,
    measure_shallow_activations,
    recorded_and_frozen_blocks,
)
from vidprism_ds.train.memory.estimate import MemoryEstimate, _gib, estimate_peak_memory


@dataclass(frozen=True)
class CheckpointingProfiles:
    """The activation profiles with none and with all of ``recorded_blocks`` checkpointed."""

    none: ActivationProfile
    full: ActivationProfile
    recorded_blocks: int

    def for_blocks(self, blocks: int) -> ActivationProfile:
        """The profile with the first ``blocks`` of the recorded blocks checkpointed."""
        if not 0 <= blocks <= self.recorded_blocks:
            raise ValueError(f"{blocks} checkpointed blocks out of {self.recorded_blocks}")
        if blocks == 0 or self.recorded_blocks == 0:
            return self.none
        if blocks == self.recorded_blocks:
            return self.full
        freed_per_block = (self.none.saved_per_frame - self.full.saved_per_frame) / self.recorded_blocks
        return dataclasses.replace(self.full, saved_per_frame=self.none.saved_per_frame - blocks * freed_per_block,
                                   full_blocks=self.recorded_blocks - blocks)


def measure_shallow_profiles(cfg: ExperimentConfig, dtype: torch.dtype) -> CheckpointingProfiles:
    """``cfg``'s profiles without building its tower (``measure_shallow_activations``), none and full."""
    recorded, _ = recorded_and_frozen_blocks(cfg)
    return CheckpointingProfiles(measure_shallow_activations(cfg, dtype, checkpointed=False),
                                 measure_shallow_activations(cfg, dtype, checkpointed=True), recorded)


@dataclass(frozen=True)
class CheckpointingChoice:
    blocks: int  # checkpointed blocks
    recorded_blocks: int
    estimate: MemoryEstimate  # with that many blocks checkpointed
    fastest_estimate: MemoryEstimate  # with none
    limit_bytes: float

    @property
    def policy(self) -> CheckpointingPolicy:
        return CheckpointingPolicy.of_count(self.blocks, self.recorded_blocks)

    @property
    def fits(self) -> bool:
        return self.estimate.total_bytes <= self.limit_bytes

    def describe(self) -> str:
        """One line: what auto chose and why."""
        chosen = f"{self.policy} ({self.blocks} of {self.recorded_blocks} blocks recomputed)"
        limit = f"the limit {_gib(self.limit_bytes)} GiB"
        if self.blocks == 0:
            why = f"no recompute fits: {_gib(self.estimate.total_bytes)} GiB <= {limit}"
        elif self.fits:
            why = (f"no recompute needs {_gib(self.fastest_estimate.total_bytes)} GiB > {limit}; "
                   f"{self.policy} needs {_gib(self.estimate.total_bytes)} GiB")
        else:
            why = f"even full recompute needs {_gib(self.estimate.total_bytes)} GiB > {limit}"
        return f"model.backbone.grad_checkpointing=auto: {chosen}; {why}"


def auto_limit_bytes(memory_limit_fraction: float, device_bytes: float) -> float:
    """The memory auto fits within: ``train.memory_limit_fraction`` of the device, or all of it where the
    fraction is 0 (the check is off, but a choice still needs a bound)."""
    return (memory_limit_fraction or 1.0) * device_bytes


def choose_checkpointing(profiles: CheckpointingProfiles,
                         estimate_with: Callable[[ActivationProfile, int], MemoryEstimate],
                         limit_bytes: float) -> CheckpointingChoice:
    """The fewest checkpointed blocks whose estimate (``estimate_with(profile, blocks)``) is within
    ``limit_bytes``; all of them when none is."""
    fastest = estimate_with(profiles.for_blocks(0), 0)
    estimate = fastest
    for blocks in range(profiles.recorded_blocks + 1):
        estimate = fastest if blocks == 0 else estimate_with(profiles.for_blocks(blocks), blocks)
        if estimate.total_bytes <= limit_bytes:
            return CheckpointingChoice(blocks, profiles.recorded_blocks, estimate, fastest, limit_bytes)
    return CheckpointingChoice(profiles.recorded_blocks, profiles.recorded_blocks, estimate, fastest, limit_bytes)


def choose_for_model(model: nn.Module, cfg: ExperimentConfig, ds_config: dict, dims: ParallelDims,
                     device: torch.device, dtype: torch.dtype, tp_divisor: int,
                     device_bytes: float) -> CheckpointingChoice:
    """In place: the fastest checkpointing of ``model.backbone`` (a ``FrameEncoder``) whose estimate fits
    ``device_bytes`` (``auto_limit_bytes``), applied with ``set_grad_checkpointing``. The activations
    are measured on the model where it lives, with none and with all of its recorded blocks checkpointed
    (``measure_activations``: collective with sharded experts or tensor parallelism)."""
    backbone = model.backbone
    recorded = backbone.recorded_blocks
    measured = {}
    for blocks in (0, recorded):
        backbone.set_grad_checkpointing(blocks)
        measured[blocks] = measure_activations(model, cfg.model.backbone.image_size, cfg.data.num_frames, device,
                                               dtype, tp_size=tp_divisor)
    profiles = CheckpointingProfiles(measured[0], measured[recorded], recorded)

    def estimate_with(profile: ActivationProfile, blocks: int) -> MemoryEstimate:
        return estimate_peak_memory(model, cfg, ds_config, dims, profile.per_frame, profile.head_per_step, blocks)

    choice = choose_checkpointing(profiles, estimate_with, auto_limit_bytes(cfg.train.memory_limit_fraction,
                                                                           device_bytes))
    backbone.set_grad_checkpointing(choice.blocks)
    return choice


__all__ = ["CheckpointingChoice", "CheckpointingProfiles", "auto_limit_bytes", "choose_checkpointing",
           "choose_for_model", "measure_shallow_profiles"]
