"""The estimate (vidprism_ds.train.memory.estimate): workspace, accumulation, and the presets on 80 GiB GPUs."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.memory.common import dims, resolved_ds, tiny_cfg, tiny_model
from vidprism_ds.config import load_config
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.batch import plan_batch
from vidprism_ds.train.ds_config import read_ds_config
from vidprism_ds.train.memory.estimate import (
    GIB,
    WORKSPACE_BYTES,
    estimate_peak_memory,
    load_estimate_config,
)
from vidprism_ds.train.memory.checkpointing import measure_shallow_profiles
from vidprism_ds.train.memory.for_config import estimate_for_config
from vidprism_ds.train.memory.fit import check_fits

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"


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


def _in_a_fresh_process(call: str) -> None:
    """Run ``call`` (a call of this module's functions) in a new Python process: measuring the presets'
    towers takes GiBs that the suite's process would otherwise keep into the multi-process tests after it."""
    done = subprocess.run([sys.executable, "-c", f"from tests.train.memory.test_estimate import *; {call}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
def test_every_gpu_preset_fits_an_80_gib_gpu_at_the_official_global_batch():
    _in_a_fresh_process("every_gpu_preset_fits()")


def every_gpu_preset_fits():
    profiles = {}  # measured once per tower and clip shape: the ViT-B/16 presets share one (and the memory)
    for path in GPU_PRESETS:
        cfg = _preset(path)
        # the recipe's global batch, which on the official 2 GPUs is the official per-GPU batch and accumulation
        assert cfg.train.global_batch == OFFICIAL_GLOBAL_BATCH.get(path.stem, 64)
        official = plan_batch(cfg.train, ParallelDims(OFFICIAL_GPUS))
        assert (official.micro_batch, official.grad_accum) == (32, OFFICIAL_GRAD_ACCUM.get(path.stem, 1))
        assert cfg.model.backbone.grad_checkpointing == "auto"
        # one GPU: nothing partitioned, the most memory any rank of a larger run needs
        backbone = cfg.model.backbone
        key = (backbone.arch, backbone.image_size, backbone.freeze, cfg.data.num_frames, str(cfg.model.head),
               cfg.data.dataset, cfg.data.labels, cfg.model.num_classes)
        if key not in profiles:
            profiles[key] = measure_shallow_profiles(cfg, torch.bfloat16)
        estimate, choice = estimate_for_config(cfg, read_ds_config("ds_configs/zero2.json"), 1, profiles[key],
                                               device_bytes=80 * GIB)
        check_fits(estimate, 80 * GIB, cfg.train.memory_limit_fraction or 0.95)
        # why the presets deviate from the official code: without any recompute the micro-batch does not fit
        assert choice.fits and choice.blocks > 0 and choice.fastest_estimate.total_bytes > 76 * GIB
        assert choice.describe().startswith(f"model.backbone.grad_checkpointing=auto: {choice.policy} (")


# what python -m vidprism_ds.train.memory --config configs/<stem>.yaml --world-size 8 prints (the presets quote it)
GIANT_FIGURES = {"k400_vith14": (24.02, 170.20, 21, 75.89), "k400_vitbigg14": (41.54, 364.92, 43, 75.94)}


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(GIANT_FIGURES))
def test_the_giant_presets_fit_an_80_gib_gpu_on_one_node(stem):
    _in_a_fresh_process(f"giant_preset_fits({stem!r})")


def giant_preset_fits(stem):
    full_gib, none_gib, auto_blocks, auto_gib = GIANT_FIGURES[stem]
    cfg = _preset(CONFIGS / f"{stem}.yaml")
    ds = read_ds_config("ds_configs/zero2.json")
    profiles = measure_shallow_profiles(cfg, torch.bfloat16)
    estimate, choice = estimate_for_config(cfg, ds, 8, profiles, device_bytes=80 * GIB)
    check_fits(estimate, 80 * GIB, cfg.train.memory_limit_fraction or 0.95)
    assert (estimate.micro_batch, estimate.grad_accum) == (16, 1)
    assert (choice.blocks, round(estimate.total_bytes / GIB, 2)) == (auto_blocks, auto_gib)
    assert round(choice.fastest_estimate.total_bytes / GIB, 2) == none_gib
    full, _ = estimate_for_config(_preset(CONFIGS / f"{stem}.yaml", "model.backbone.grad_checkpointing=full"), ds, 8,
                                  profiles)
    assert full.checkpointing == "full" and round(full.total_bytes / GIB, 2) == full_gib
