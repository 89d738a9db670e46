"""What the memory tests share: a tiny config, its model, its parallel sizes, and a DeepSpeed config resolved for it."""

from vidprism_ds.config import load_config
from vidprism_ds.model.video_model import build_video_model
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.ds_config import read_ds_config, resolve_ds_config

TINY = ["model.backbone.arch=tiny", "model.backbone.image_size=32", "data.image_size=32", "data.num_frames=8",
        "train.micro_batch=2", "train.grad_accum=3"]


def tiny_cfg(*overrides):
    return load_config(None, TINY + list(overrides))


def tiny_model(cfg):
    return build_video_model(cfg.model, 5, cfg.data.num_frames, seed=0).model


def dims(cfg, dp_size, ep_size=1):
    """The parallel sizes of ``dp_size`` data-parallel ranks with ``cfg``'s tensor parallelism."""
    return ParallelDims(dp_size * cfg.parallel.tp_size, cfg.parallel.tp_size, ep_size)


def resolved_ds(name, cfg, dp_size, on_gpu=True):
    return resolve_ds_config(read_ds_config(f"ds_configs/{name}"), cfg, dims(cfg, dp_size), on_gpu, has_experts=True)
