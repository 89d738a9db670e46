"""grad_checkpointing: auto (vidprism_ds.train.memory.checkpointing): exact profiles for any block count, and
the fastest setting that fits."""

import pytest
import torch

from tests.train.memory.common import dims, resolved_ds, tiny_model
from vidprism_ds.config import load_config
from vidprism_ds.train.memory.activations import measure_activations
from vidprism_ds.train.memory.checkpointing import CheckpointingProfiles, choose_for_model
from vidprism_ds.train.memory.estimate import estimate_peak_memory

# ViT-B/32 at 64 px: 12 real-width blocks of 5 tokens, cheap to build whole
B32 = ["model.backbone.arch=ViT-B-32", "model.backbone.image_size=64", "data.image_size=64", "data.num_frames=8",
       "model.num_classes=5", "train.micro_batch=64", "train.grad_accum=1"]


def _profile(model, cfg, blocks):
    model.backbone.set_grad_checkpointing(blocks)
    return measure_activations(model, 64, cfg.data.num_frames, "cpu", torch.bfloat16)


@pytest.fixture(scope="module")
def b32():
    cfg = load_config(None, B32)
    return cfg, tiny_model(cfg)


def test_any_block_count_is_interpolated_exactly_from_none_and_full(b32):
    cfg, model = b32
    profiles = CheckpointingProfiles(_profile(model, cfg, 0), _profile(model, cfg, 12), 12)
    for blocks in (1, 5, 11):
        measured = _profile(model, cfg, blocks)
        interpolated = profiles.for_blocks(blocks)
        assert interpolated.per_frame == pytest.approx(measured.per_frame, rel=1e-9)
        assert (interpolated.full_blocks, interpolated.checkpointed) == (measured.full_blocks, True) == (12 - blocks, True)
    # each checkpointed block frees memory, the first one less (it adds the recompute's working set)
    per_frame = [profiles.for_blocks(k).per_frame for k in range(13)]
    assert all(later < earlier for earlier, later in zip(per_frame[1:], per_frame[2:]))
    with pytest.raises(ValueError):
        profiles.for_blocks(13)


def test_auto_takes_the_fewest_recomputed_blocks_that_fit(b32):
    cfg, model = b32
    ds, parallel = resolved_ds("zero2.json", cfg, 1), dims(cfg, 1)
    fraction = cfg.train.memory_limit_fraction
    totals = {}
    for blocks in (0, 3, 4, 12):
        profile = _profile(model, cfg, blocks)
        totals[blocks] = estimate_peak_memory(model, cfg, ds, parallel, profile.per_frame, profile.head_per_step,
                                              blocks).total_bytes
    # a device on which 4 recomputed blocks fit and 3 do not
    device_bytes = (totals[3] + totals[4]) / 2 / fraction
    choice = choose_for_model(model, cfg, ds, parallel, torch.device("cpu"), torch.bfloat16, 1, device_bytes)
    assert (choice.blocks, str(choice.policy), choice.fits) == (4, "blocks:4", True)
    assert model.backbone.checkpointed_blocks == 4  # applied to the model
    assert choice.estimate.total_bytes == pytest.approx(totals[4], rel=1e-9)
    assert choice.describe().startswith("model.backbone.grad_checkpointing=auto: blocks:4 (4 of 12 blocks recomputed); "
                                        "no recompute needs")

    roomy = choose_for_model(model, cfg, ds, parallel, torch.device("cpu"), torch.bfloat16, 1, 2 * totals[0] / fraction)
    assert (str(roomy.policy), model.backbone.checkpointed_blocks) == ("none", 0)
    assert "no recompute fits" in roomy.describe()

    cramped = choose_for_model(model, cfg, ds, parallel, torch.device("cpu"), torch.bfloat16, 1, totals[12] / 2)
    assert (str(cramped.policy), cramped.fits, model.backbone.checkpointed_blocks) == ("full", False, 12)
    assert "even full recompute needs" in cramped.describe()
