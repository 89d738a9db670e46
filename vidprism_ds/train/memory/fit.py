"""The check: does an estimate fit the device, and if not, which knob to turn.

``check_fits`` raises ``ConfigError`` naming the remedies (gradient checkpointing, a smaller micro-batch
with more accumulation, ZeRO-2, ZeRO-Offload, or what is left when none helps); ``report_and_check``
measures the model, estimates, logs and checks: the trainer calls it at start-up.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.memory.activations import measure_activations
from vidprism_ds.train.memory.checkpointing import choose_for_model
from vidprism_ds.train.memory.estimate import MemoryEstimate, _gib, estimate_peak_memory
from vidprism_ds.train.memory.parameters import _is_tensor_parallel


def _fitting_micro_batch(estimate: MemoryEstimate, limit: float) -> int:
    """The largest micro-batch that divides micro_batch x grad_accum (so the global batch is kept) and
    whose activations fit beside everything else; 0 if not even one clip fits."""
    room = limit - (estimate.total_bytes - estimate.activation_bytes) - estimate.activation_bytes_per_step
    per_clip = estimate.activation_bytes_per_frame * estimate.num_frames
    most = int(room // per_clip) if room > 0 and per_clip > 0 else 0
    clips_per_rank = estimate.micro_batch * estimate.grad_accum
    return max((m for m in range(1, min(most, estimate.micro_batch - 1) + 1) if clips_per_rank % m == 0), default=0)


def _remedies(estimate: MemoryEstimate, limit: float) -> list[str]:
    remedies = []
    if estimate.checkpointing != "full" and estimate.activation_bytes > 0:
        remedies.append(f"set model.backbone.grad_checkpointing=full (now {estimate.checkpointing}; "
                        "recomputes each block in backward, keeps only its input)")
    micro = _fitting_micro_batch(estimate, limit)
    if micro and estimate.global_batch_fixed:
        remedies.append(f"lower train.micro_batch (train.micro_batch={micro}; train.grad_accum follows from "
                        f"train.global_batch)")
    elif micro:
        accum = estimate.micro_batch * estimate.grad_accum // micro
        remedies.append(f"lower train.micro_batch and raise train.grad_accum to keep the global batch "
                        f"(train.micro_batch={micro} train.grad_accum={accum})")
    elif estimate.micro_batch > 1:
        remedies.append("lower train.micro_batch and raise train.grad_accum to keep the global batch")
    # The optimizer-side knobs only where they could close the gap on their own: suggesting offload for
    # 1 GiB of optimizer state when activations are 20 GiB over would send the user the wrong way.
    over = estimate.total_bytes - limit
    unpartitioned = estimate.gradient_bytes if estimate.zero_stage < 2 else 0
    if estimate.zero_stage == 0:
        unpartitioned += estimate.optimizer_bytes
    dp_size = estimate.dims.dp_size
    if dp_size > 1 and unpartitioned * (1 - 1 / dp_size) >= over:
        remedies.append(f"partition gradients and optimizer state with ZeRO-2 (--deepspeed_config "
                        f"ds_configs/zero2.json; now ZeRO-{estimate.zero_stage})")
    if not estimate.offload_optimizer and estimate.optimizer_bytes >= over:
        remedies.append(f"move the optimizer state ({_gib(estimate.optimizer_bytes)} GiB) to the CPU with "
                        f"--deepspeed_config ds_configs/zero2_offload.json")
    if not remedies:  # one clip, checkpointed, does not fit: only the clip itself can shrink
        remedies.append("shorten the clips (data.num_frames) or the frames (model.backbone.image_size), or use "
                        "a GPU with more memory")
    return remedies


def check_fits(estimate: MemoryEstimate, device_total_bytes: int, fraction: float) -> None:
    """Raise ``ConfigError`` (one line: estimate vs limit, then what to change) when the estimate
    exceeds ``fraction`` of the device's memory. ``fraction`` 0 switches the check off."""
    if fraction <= 0:
        return
    limit = fraction * device_total_bytes
    if estimate.total_bytes <= limit:
        return
    raise ConfigError(
        f"estimated peak GPU memory {_gib(estimate.total_bytes)} GiB per rank exceeds train.memory_limit_fraction="
        f"{fraction:g} of {_gib(device_total_bytes)} GiB ({_gib(limit)} GiB): activations "
        f"{_gib(estimate.activation_bytes)} GiB ({estimate.micro_batch} clips x {estimate.num_frames} frames), "
        f"optimizer state {_gib(estimate.optimizer_bytes)} GiB; " + "; or ".join(_remedies(estimate, limit)))


# What report_and_check logs on a CPU run, instead of the estimate (still computed and returned).
CPU_RUN_LINE = ("memory: the peak GPU memory estimate does not apply to a CPU run (python -m "
                "vidprism_ds.train.memory estimates a GPU run)")
# ... and after it, where model.backbone.grad_checkpointing is auto: a CPU run keeps every activation
CPU_AUTO_CHECKPOINTING = "; model.backbone.grad_checkpointing=auto: none on a CPU"


def report_and_check(model: nn.Module, cfg: ExperimentConfig, ds_config: dict, dims: ParallelDims,
                     device: torch.device | str, dtype: torch.dtype,
                     log: Optional[Callable[[str], None]] = None) -> MemoryEstimate:
    """Resolve ``model.backbone.grad_checkpointing: auto`` (``checkpointing.choose_for_model``, logged), then
    measure the activations on ``device``, estimate the peak per rank at the parallel sizes ``dims``,
    pass the summary to ``log``; on a GPU raise ``ConfigError``
    if it exceeds ``train.memory_limit_fraction`` of the device (on the CPU there is nothing to compare
    with). Collective when experts are sharded or the tower is tensor-parallel; call it on every rank."""
    device = torch.device(device)
    # a tower parallelised already is measured with its shards: nothing left to divide
    tp_divisor = 1 if _is_tensor_parallel(model) else dims.tp_size
    policy = getattr(model.backbone, "checkpointing_policy", None)  # a FrameEncoder's
    auto = policy is not None and policy.mode == "auto"
    device_bytes = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    if auto and device.type == "cuda":
        # the choice's estimate is the chosen setting's (derived exactly from the two measurements it made)
        choice = choose_for_model(model, cfg, ds_config, dims, device, dtype, tp_divisor, device_bytes)
        if log is not None:
            log(choice.describe())
        estimate = choice.estimate
    else:
        if auto:  # a CPU run has no device memory to fit: keep every activation
            model.backbone.set_grad_checkpointing(0)
        profile = measure_activations(model, cfg.model.backbone.image_size, cfg.data.num_frames, device, dtype,
                                      tp_size=tp_divisor)
        estimate = estimate_peak_memory(model, cfg, ds_config, dims, profile.per_frame, profile.head_per_step)
    if log is not None:  # on a CPU run the GPU figures (CUDA/NCCL workspace and all) would only mislead
        log(estimate.format() if device.type == "cuda" else CPU_RUN_LINE + (CPU_AUTO_CHECKPOINTING if auto else ""))
    if device.type == "cuda":
        check_fits(estimate, device_bytes, cfg.train.memory_limit_fraction)
    return estimate
