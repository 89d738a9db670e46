"""What a run checks before anything slow (no process group yet, no model): each failure is one
``ConfigError`` naming the key or file, or one warning line."""

from __future__ import annotations

import os
from typing import Optional

import torch

from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.data.loaders import check_shards_at_start


def check_decode_device(cfg: ExperimentConfig) -> None:
    """data.decode_device=cuda needs a GPU in this process (checked before the demo renders its data, too)."""
    if cfg.data.decode_device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("data.decode_device: cuda decodes JPEG frames on the GPU, and this process has none; "
                          "use cpu")


def check_inputs(cfg: ExperimentConfig, num_classes: int, eval_class_names: Optional[list[str]]) -> None:
    """What the run reads, checked before anything slow, as one ConfigError naming the key or file: the
    decode device, and the shard folders, manifests and class lists (the evaluation loader is otherwise
    built, and checked, only at the first evaluation, possibly hours in)."""
    check_decode_device(cfg)
    try:
        check_shards_at_start(cfg.data, num_classes, train=not cfg.train.eval_only, eval_class_names=eval_class_names)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data: {err}") from None


def unused_ep_size_warning(ep_size: int, has_experts: bool, variant: str) -> Optional[str]:
    """The line to print when ``parallel.ep_size`` asks for expert parallelism a model cannot use."""
    if ep_size == 1 or has_experts:
        return None
    return (f"warning: parallel.ep_size={ep_size} has no effect: model.variant={variant} has no experts "
            "(every process holds the whole model)")


def limit_cpu_threads(world_size: int, on_gpu: bool) -> None:
    if not on_gpu and "OMP_NUM_THREADS" not in os.environ:
        # Processes sharing the cores: oversubscribed threads only add scheduling overhead.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
