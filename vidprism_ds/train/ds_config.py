"""The DeepSpeed JSON, made consistent with the experiment config (or rejected with both keys named).

The YAML owns batch sizes and clipping (``train.micro_batch``, ``train.grad_accum`` or
``train.global_batch``, from which the accumulation is derived for the world size:
``vidprism_ds.train.batch``; ``optim.grad_clip``); the JSON owns ZeRO and offload. A JSON value of ``"auto"`` or an absent key is
filled from the YAML; a different number is an error, because silently preferring either would
train with a batch size the user did not choose. Precision is ``train.precision``: ``auto`` is bf16 on
GPU and fp32 on CPU (CPU bf16 matmuls are slow), ``bf16`` runs bf16 on the CPU too (the tests run the GPU
path's numerics that way).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.batch import plan_batch


def uses_bf16(precision: str, on_gpu: bool) -> bool:
    """``train.precision`` on this device: auto = bf16 on a GPU, fp32 on the CPU."""
    return precision == "bf16" or (precision == "auto" and on_gpu)


def training_dtype(precision: str, on_gpu: bool) -> torch.dtype:
    """The dtype of the model's weights and inputs under DeepSpeed (its optimizer keeps fp32 masters)."""
    return torch.bfloat16 if uses_bf16(precision, on_gpu) else torch.float32


# DeepSpeed's default for a key the ds_configs may leave out (deepspeed/runtime/zero/config.py).
DS_DEFAULT_REDUCE_BUCKET = 500_000_000


@dataclass(frozen=True)
class DeepSpeedSettings:
    """What the code reads off a DeepSpeed config, read in this one place (the optimizer builder, the
    memory estimate)."""

    zero_stage: int
    offload_optimizer: bool  # ZeRO-Offload: optimizer state and step on the CPU
    dtype: torch.dtype  # weights and inputs: bf16 when bf16.enabled (set by ``resolve_ds_config``)
    grad_dtype: torch.dtype  # gradient accumulation: fp32 only when data_types.grad_accum_dtype says so
    overlap_comm: bool
    reduce_bucket_size: int  # elements per ZeRO gradient-reduction bucket

    @classmethod
    def read(cls, ds: dict) -> DeepSpeedSettings:
        zero = ds.get("zero_optimization") or {}
        offload = zero.get("offload_optimizer") or {}
        dtype = torch.bfloat16 if (ds.get("bf16") or {}).get("enabled") is True else torch.float32
        accum = (ds.get("data_types") or {}).get("grad_accum_dtype")
        return cls(zero_stage=int(zero.get("stage", 0)), offload_optimizer=offload.get("device") == "cpu",
                   dtype=dtype, grad_dtype=torch.float32 if accum in ("fp32", "float32", "float") else dtype,
                   overlap_comm=bool(zero.get("overlap_comm", False)),
                   reduce_bucket_size=int(zero.get("reduce_bucket_size", DS_DEFAULT_REDUCE_BUCKET)))


def read_ds_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--deepspeed_config: {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"--deepspeed_config: {path} is not valid JSON ({err})") from None


def _reconcile(ds: dict, key: str, value: Any, yaml_key: str) -> None:
    given = ds.get(key, "auto")
    if given == "auto":
        ds[key] = value
    elif given != value:
        raise ConfigError(f"{yaml_key}: {value} disagrees with the DeepSpeed config's {key}={given}; "
                          f"set one of them to match (or {key} to \"auto\")")


def _skip_unread_work(ds: dict, cfg: ExperimentConfig, dims: ParallelDims, bf16: bool) -> None:
    """Leave out what DeepSpeed would do every optimizer step for nothing (values the JSON sets stay):

    * the global gradient norm, without clipping: nothing reads it (ZeRO-1/2 without offload, and not the
      ZeRO-1 bf16 optimizer DeepSpeed picks for fp32 gradient accumulation, which always needs it);
    * the inf/nan check of bf16 gradients, when optim.skip_nonfinite_steps is false;
    * overlap_comm on one data-parallel rank: there is no gradient reduction to overlap, only a second
      reduction bucket to allocate.
    """
    zero = ds["zero_optimization"]
    settings = DeepSpeedSettings.read(ds)
    zero1_bf16_optimizer = settings.zero_stage == 1 and bf16 and settings.grad_dtype == torch.float32
    if cfg.optim.grad_clip == 0 and settings.zero_stage in (1, 2) and not settings.offload_optimizer \
            and not zero1_bf16_optimizer:
        zero.setdefault("compute_grad_norm", False)
    if zero.get("compute_grad_norm") is False and cfg.optim.grad_clip > 0:
        raise ConfigError(f"optim.grad_clip: {cfg.optim.grad_clip} clips the gradient norm, which the DeepSpeed "
                          "config's zero_optimization.compute_grad_norm=false does not compute; set one of them")
    if bf16:
        ds["bf16"].setdefault("check_grad_overflow", cfg.optim.skip_nonfinite_steps)
    if dims.dp_size == 1 and zero.get("overlap_comm"):
        zero["overlap_comm"] = False


def resolve_ds_config(ds_config: dict, cfg: ExperimentConfig, dims: ParallelDims, on_gpu: bool,
                      has_experts: bool) -> dict:
    ds = copy.deepcopy(ds_config)
    batch = plan_batch(cfg.train, dims)  # the accumulation these sizes need
    micro, accum = batch.micro_batch, batch.grad_accum
    size_name = dims.dp_size_names()[0]
    _reconcile(ds, "train_micro_batch_size_per_gpu", micro, "train.micro_batch")
    fixed = cfg.train.global_batch > 0
    _reconcile(ds, "gradient_accumulation_steps", accum,
               "train.grad_accum" + (f" (derived from train.global_batch for {size_name} {dims.dp_size})" if fixed else ""))
    _reconcile(ds, "train_batch_size", batch.global_batch, "train.global_batch" if fixed else
               f"train.micro_batch x train.grad_accum x {size_name} ({micro} x {accum} x {dims.dp_size})")
    _reconcile(ds, "gradient_clipping", cfg.optim.grad_clip, "optim.grad_clip")

    zero = ds.setdefault("zero_optimization", {"stage": 2})
    stage = zero.get("stage", 0)
    if stage == 3 and has_experts:
        raise ConfigError("--deepspeed_config: ZeRO stage 3 does not support DeepSpeed MoE models (expert "
                          "parallelism); use ds_configs/zero2.json or zero1.json")
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"--deepspeed_config: zero_optimization.stage={stage} is not 0-3")
    if has_experts and stage == 2:
        zero["contiguous_gradients"] = True  # DeepSpeed requires it for MoE with ZeRO-2
    bf16 = uses_bf16(cfg.train.precision, on_gpu)
    if ds.get("fp16", {}).get("enabled") not in (None, "auto", False):
        raise ConfigError("--deepspeed_config: fp16 is not supported; use train.precision=bf16 (auto: bf16 on GPU)")
    if ds.get("bf16", {}).get("enabled") not in (None, "auto", bf16):
        raise ConfigError(f"train.precision: {cfg.train.precision} means {'bf16' if bf16 else 'fp32'} here, but the "
                          f"DeepSpeed config sets bf16.enabled={ds['bf16']['enabled']}; set bf16.enabled to \"auto\" "
                          "and choose the precision with train.precision")
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": bf16}
    ds.pop("fp16", None)
    _skip_unread_work(ds, cfg, dims, bf16)
    # The optimizer is built here (parameter groups by module); DeepSpeed's config must not build another.
    if "optimizer" in ds or "scheduler" in ds:
        raise ConfigError("--deepspeed_config: remove \"optimizer\"/\"scheduler\"; they come from the optim.* "
                          "keys of the experiment config")
    ds["zero_allow_untested_optimizer"] = True
    ds.setdefault("steps_per_print", 10 ** 9)  # our own logger prints progress
    return ds
