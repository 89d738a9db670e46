"""The estimate: ``MemoryEstimate``, the bytes per rank at the peak of a training step and what they
were computed for, and the functions that make it.

``estimate_peak_memory`` adds a model's parameters, gradients and optimizer state, counted per ZeRO stage
following DeepSpeed's ZeRO-1/2 optimizer (``deepspeed/runtime/zero/stage_1_and_2.py``), the measured
activations and a workspace allowance. ZeRO partitions over the data-parallel group, the experts' share
over the expert-data-parallel group (``vidprism_ds.parallel.dims.ParallelDims``). ``load_estimate_config`` loads the config train.py would run, at random init
(``vidprism_ds.train.memory.for_config`` estimates it without its weights).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.config.validation import CheckpointingPolicy
from vidprism_ds.model.backbone import transformer_blocks
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.ds_config import DeepSpeedSettings
from vidprism_ds.train.memory.activations import (
    _element_size,
)
from vidprism_ds.train.memory.parameters import _count_rank_parameters

GIB = 1024 ** 3
MIB = 1024 ** 2
# CUDA context, cuBLAS/NCCL workspaces and the caching allocator's fragmentation: what a bf16 ViT run
# holds beyond its tensors, calibrated on H200 runs (docs/benchmarks.md, GPU).
WORKSPACE_BYTES = 3 * GIB
# Adam's two moments, fp32 (torch AdamW and DeepSpeedCPUAdam alike), and the fp32 master weights.
ADAM_MOMENT_BYTES = 8
MASTER_WEIGHT_BYTES = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per rank at the peak of a training step, and what they were computed for."""

    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    workspace_bytes: int
    # the configuration behind the figures; check_fits names knobs from these
    parameters_on_rank: int
    activation_bytes_per_frame: float
    micro_batch: int
    grad_accum: int
    num_frames: int
    checkpointing: str  # model.backbone.grad_checkpointing as computed: none, blocks:K (K blocks recomputed), full
    dtype_name: str
    zero_stage: int
    offload_optimizer: bool
    dims: ParallelDims  # ZeRO partitions over dims.dp_size ranks, the experts' share over dims.expert_dp_size
    # train.global_batch is set: the accumulation follows from the micro-batch, so a remedy names only that
    global_batch_fixed: bool = False
    activation_bytes_per_step: float = 0.0  # of activation_bytes, what does not scale with the clips

    @property
    def grad_checkpointing(self) -> bool:
        return self.checkpointing != "none"

    @property
    def total_bytes(self) -> int:
        return (self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes
                + self.workspace_bytes)

    def format(self) -> str:
        master = self.zero_stage >= 1 or self.dtype_name != "float32"
        optimizer_where = "on the CPU (ZeRO-Offload)" if self.offload_optimizer else (
            f"{'fp32 master + ' if master else ''}Adam moments, ZeRO-{self.zero_stage}")
        return "\n".join([
            f"estimated peak GPU memory per rank: {_gib(self.total_bytes)} GiB "
            f"(world size {self.dims.world_size}, tp_size {self.dims.tp_size}, data-parallel {self.dims.dp_size}, "
            f"ep_size {self.dims.ep_size}, ZeRO-{self.zero_stage})",
            f"  parameters   {_gib(self.parameter_bytes):>7} GiB  "
            f"({self.parameters_on_rank / 1e6:.1f}M on this rank, {self.dtype_name})",
            f"  gradients    {_gib(self.gradient_bytes):>7} GiB",
            f"  optimizer    {_gib(self.optimizer_bytes):>7} GiB  ({optimizer_where})",
            f"  activations  {_gib(self.activation_bytes):>7} GiB  ({self.micro_batch} clips x {self.num_frames} "
            f"frames x {self.activation_bytes_per_frame / MIB:.1f} MiB/frame, gradient checkpointing "
            f"{self.checkpointing})",
            f"  workspace    {_gib(self.workspace_bytes):>7} GiB  (CUDA/NCCL workspaces, fragmentation, "
            f"ZeRO gradient buckets)",
        ])


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


def _workspace_bytes(ds: DeepSpeedSettings, grad_bytes: int) -> int:
    """The fixed allowance plus ZeRO's gradient reduction buckets (reduce_bucket_size elements, two of
    them with overlap_comm), which are alive during backward. The all-gather bucket is used in the
    optimizer step, after the activations are freed, and is not added."""
    if ds.zero_stage < 1:
        return WORKSPACE_BYTES
    buckets = 2 if ds.overlap_comm else 1
    return WORKSPACE_BYTES + ds.reduce_bucket_size * grad_bytes * buckets


def estimate_peak_memory(model: nn.Module, cfg: ExperimentConfig, ds_config: dict, dims: ParallelDims,
                         activation_bytes_per_frame: float, activation_bytes_per_step: float = 0.0,
                         checkpointed_blocks: Optional[int] = None) -> MemoryEstimate:
    """Peak bytes per rank for training ``model`` with ``cfg`` under the resolved DeepSpeed config, at the
    parallel sizes ``dims`` (ZeRO partitions over its ``dp_size`` data-parallel ranks).

    * parameters: every parameter on the rank (frozen ones too) in the training dtype (bf16 when
      DeepSpeed's bf16 is enabled); only the rank's experts (E / ep_size of them); of the tower's
      tensor-parallel weights the rank's 1/tp_size (the model may be parallelised already or not).
    * gradients: trainable parameters only, in the gradient dtype. ZeRO-0/1 keep them whole; ZeRO-2
      partitions them over the data-parallel ranks, expert ones over the expert-data-parallel group
      (``dims.expert_dp_size``).
    * optimizer state: trainable parameters only: Adam's two fp32 moments, plus a fp32 master copy
      (DeepSpeed's ZeRO-1/2 optimizer always updates a fp32 clone of its partition; at ZeRO-0 only bf16
      training has one). ZeRO-1/2 partition it like ZeRO-2's gradients; ZeRO-Offload keeps it on the
      CPU. The step's transient fp32 gradient partition comes after the activations are freed and is
      not added.
    * activations: ``activation_bytes_per_frame`` (per rank: ``measure_activations`` divides by
      tp_size) x micro_batch x num_frames, plus ``activation_bytes_per_step`` (``ActivationProfile.head_per_step``:
      kept once a step whatever the micro-batch).

    ``checkpointed_blocks``: the blocks the activations were measured (or interpolated) with recomputed,
    for the summary; None reads them from the model.
    """
    ds = DeepSpeedSettings.read(ds_config)
    stage, dtype = ds.zero_stage, ds.dtype
    param_bytes, grad_bytes = _element_size(dtype), _element_size(ds.grad_dtype)
    counts = _count_rank_parameters(model, dims.ep_size, dims.tp_size)
    dp, expert_dp = dims.dp_size, dims.expert_dp_size

    def partitioned(elements: int, group: int, partition: bool) -> int:
        return math.ceil(elements / group) if partition else elements

    gradients = grad_bytes * (partitioned(counts.dense_trainable, dp, stage >= 2)
                              + partitioned(counts.expert_trainable, expert_dp, stage >= 2))
    state_bytes = ADAM_MOMENT_BYTES + (MASTER_WEIGHT_BYTES if stage >= 1 or dtype != torch.float32 else 0)
    optimizer = 0 if ds.offload_optimizer else state_bytes * (partitioned(counts.dense_trainable, dp, stage >= 1)
                                                 + partitioned(counts.expert_trainable, expert_dp, stage >= 1))
    micro_batch, num_frames = cfg.train.micro_batch, cfg.data.num_frames
    blocks = transformer_blocks(model)
    recorded = getattr(model.backbone, "recorded_blocks", len(blocks))
    if checkpointed_blocks is None:
        checkpointed_blocks = sum(block.checkpointed for block in blocks)
    return MemoryEstimate(
        parameter_bytes=param_bytes * (counts.dense + counts.expert + counts.buffer_elements),
        gradient_bytes=gradients,
        optimizer_bytes=optimizer,
        activation_bytes=int(activation_bytes_per_frame * micro_batch * num_frames + activation_bytes_per_step),
        activation_bytes_per_step=activation_bytes_per_step,
        workspace_bytes=_workspace_bytes(ds, grad_bytes),
        parameters_on_rank=counts.dense + counts.expert,
        activation_bytes_per_frame=activation_bytes_per_frame,
        # the resolved JSON holds the accumulation derived for this world size (train.global_batch)
        micro_batch=micro_batch, grad_accum=int(ds_config.get("gradient_accumulation_steps", cfg.train.grad_accum)),
        num_frames=num_frames, global_batch_fixed=cfg.train.global_batch > 0,
        checkpointing=str(CheckpointingPolicy.of_count(checkpointed_blocks, recorded)),
        dtype_name=str(dtype).removeprefix("torch."), zero_stage=stage, offload_optimizer=ds.offload_optimizer,
        dims=dims)


def load_estimate_config(config_path: Optional[str], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config train.py would run, with random init: the weights file has the same shapes."""
    from vidprism_ds.train.run_config import load_run_config

    cfg = load_run_config(config_path, overrides, eval_only=False)
    backbone = dataclasses.replace(cfg.model.backbone, pretrained_path=None)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone),
                               train=dataclasses.replace(cfg.train, init_from=""))
