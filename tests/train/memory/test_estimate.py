"""The estimate (vidprism_ds.train.memory.estimate): workspace, accumulation, and the presets on 80 GiB GPUs."""

from pathlib import Path

import pytest
import torch

from tests.train.memory.common import dims, resolved_ds, tiny_cfg, tiny_model
from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.model.video_model import build_video_model
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.batch import plan_batch
from vidprism_ds.train.ds_config import read_ds_config
from vidprism_ds.train.memory.activations import measure_activation_bytes_per_frame
from vidprism_ds.train.memory.estimate import (
    GIB,
    WORKSPACE_BYTES,
    estimate_for_config,
    estimate_peak_memory,
    load_estimate_config,
)
from vidprism_ds.train.memory.fit import check_fits

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_zero_buckets_are_part_of_the_workspace():
    cfg = tiny_cfg()
    ds = resolved_ds("zero2.json", cfg, 2)  # overlap_comm: two reduce buckets of 5e7 bf16 elements
    est = estimate_peak_memory(tiny_model(cfg), cfg, ds, dims(cfg, 2, 1), 0.0)
    assert est.workspace_bytes == WORKSPACE_BYTES + 2 * 50_000_000 * 2


def test_the_estimate_records_the_accumulation_derived_for_its_world_size():
    cfg = tiny_cfg("train.grad_accum=1", "train.global_batch=16")
    for world_size, accum in ((1, 8), (2, 4)):
        ds = resolved_ds("zero2.json", cfg, world_size)
        estimate = estimate_peak_memory(tiny_model(cfg), cfg, ds, dims(cfg, world_size, 1), 1000.0)
        assert (estimate.grad_accum, estimate.global_batch_fixed) == (accum, True)


# --------------------------------------------------------------------------------------------------
# the presets
# --------------------------------------------------------------------------------------------------

# ViT-H/14 and ViT-bigG/14: no official recipe, sized for one 8-GPU node; their towers are never built whole
GIANT_PRESETS = ("k400_vith14", "k400_vitbigg14")
GPU_PRESETS = sorted(p for p in CONFIGS.glob("*.yaml")
                     if load_config(p).model.backbone.arch != "tiny" and p.stem not in GIANT_PRESETS)
# the official launch: 2 GPUs; global batch 64 (ViT-B/16 recipes), 128 (ViT-L/14: 32 x 2 accumulation x 2)
OFFICIAL_GPUS = 2
OFFICIAL_GLOBAL_BATCH = {"k400_vitl14": 128}
OFFICIAL_GRAD_ACCUM = {"k400_vitl14": 2}


def _preset(path, *overrides):
    """As the CLI loads it: the preset at random init (no weights file needed)."""
    return load_estimate_config(str(path), list(overrides))


@pytest.mark.slow
def test_every_gpu_preset_fits_an_80_gib_gpu_at_the_official_global_batch():
    models, per_frame = {}, {}
    for path in GPU_PRESETS:
        cfg = _preset(path)
        # the recipe's global batch, which on the official 2 GPUs is the official per-GPU batch and accumulation
        assert cfg.train.global_batch == OFFICIAL_GLOBAL_BATCH.get(path.stem, 64)
        official = plan_batch(cfg.train, ParallelDims(OFFICIAL_GPUS))
        assert (official.micro_batch, official.grad_accum) == (32, OFFICIAL_GRAD_ACCUM.get(path.stem, 1))
        arch = cfg.model.backbone.arch
        if arch not in models:  # one build per arch: the classifier's row count is all that differs (710 rows)
            models[arch] = build_video_model(cfg.model, 710, cfg.data.num_frames, seed=0).model
        model = models[arch]
        model.backbone.set_grad_checkpointing(cfg.model.backbone.grad_checkpointing)
        key = (arch, cfg.model.backbone.grad_checkpointing, cfg.model.backbone.image_size, cfg.data.num_frames)
        if key not in per_frame:
            # one frame through the backbone: its per-frame figure is exact at any count (see above)
            per_frame[key] = measure_activation_bytes_per_frame(model, key[2], key[3], "cpu", torch.bfloat16,
                                                                backbone_frames=1)
        # one GPU: nothing partitioned, the most memory any rank of a larger run needs
        ds = resolved_ds("zero2.json", cfg, 1)
        estimate = estimate_peak_memory(model, cfg, ds, dims(cfg, 1, cfg.parallel.ep_size), per_frame[key])
        check_fits(estimate, 80 * GIB, cfg.train.memory_limit_fraction or 0.95)
        assert estimate.grad_checkpointing
    # why the ViT-B/16 presets deviate: without checkpointing their 32 x 32-frame micro-batch does not fit
    b16 = next(p for p in GPU_PRESETS if p.stem == "k400_vitb16")
    cfg = _preset(b16, "model.backbone.grad_checkpointing=false")
    models["ViT-B-16"].backbone.set_grad_checkpointing(False)
    no_ckpt = measure_activation_bytes_per_frame(models["ViT-B-16"], 224, 32, "cpu", torch.bfloat16,
                                                 backbone_frames=1)
    estimate = estimate_peak_memory(models["ViT-B-16"], cfg, resolved_ds("zero2.json", cfg, 1), dims(cfg, 1, 1), no_ckpt)
    with pytest.raises(ConfigError, match="grad_checkpointing"):
        check_fits(estimate, 80 * GIB, 0.95)
    assert estimate.activation_bytes > 70 * GIB


@pytest.mark.slow
@pytest.mark.parametrize("stem, total_gib", [("k400_vith14", 24.02), ("k400_vitbigg14", 41.54)])
def test_the_giant_presets_fit_an_80_gib_gpu_on_one_node(stem, total_gib):
    cfg = _preset(CONFIGS / f"{stem}.yaml")
    estimate = estimate_for_config(cfg, read_ds_config("ds_configs/zero2.json"), 8)
    check_fits(estimate, 80 * GIB, cfg.train.memory_limit_fraction or 0.95)
    assert estimate.grad_checkpointing and (estimate.micro_batch, estimate.grad_accum) == (16, 1)
    assert round(estimate.total_bytes / GIB, 2) == total_gib  # the figure the preset's comment quotes
