"""The model an experiment config trains takes its clip layout from the data config."""

import dataclasses

import pytest
import torch

from vidprism_ds.config import load_config
from vidprism_ds.model.build import build_experiment_head, build_experiment_model

TINY = ["model.backbone.arch=tiny", "model.backbone.image_size=32", "data.image_size=32", "data.num_frames=12",
        "model.head.frame_time_encoding=true", "model.head.expert_pos_embed=true", "model.num_classes=3"]


@pytest.mark.parametrize("clip_overrides, burst_frames", [
    (["data.clip_sampling=segment"], 0),
    (["data.clip_sampling=dense"], 0),
    (["data.clip_sampling=multirate"], 6),  # 0 = half the clip
    (["data.clip_sampling=multirate", "data.multirate_burst_frames=4"], 4),
])
def test_the_head_reads_the_configured_burst_part(clip_overrides, burst_frames):
    cfg = load_config(None, TINY + clip_overrides)
    model = build_experiment_model(cfg, num_classes=3).model
    assert model.head.burst_frames == burst_frames
    # a multirate clip's fast groups read every burst frame and each change between two after their segment tokens
    fast_tokens = 12 // 2 if burst_frames == 0 else -(-(12 - burst_frames) // 2) + 2 * burst_frames - 1
    assert model.head.expert_stream_lengths(12)[0] == fast_tokens
    assert build_experiment_head(cfg, dim=16, num_classes=3).burst_frames == burst_frames


def test_the_seed_and_a_replaced_model_config_are_used():
    cfg = load_config(None, TINY + ["data.clip_sampling=multirate", "train.seed=3"])
    first, second = (build_experiment_model(cfg, 3).model for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    other_seed = build_experiment_model(load_config(None, TINY + ["data.clip_sampling=multirate", "train.seed=4"]), 3)
    assert not torch.equal(first.head.classifier.weight, other_seed.model.head.classifier.weight)
    meanpool = dataclasses.replace(cfg.model, variant="meanpool")
    assert type(build_experiment_model(cfg, 3, meanpool).model.head).__name__ == "MeanPoolHead"


@pytest.mark.parametrize("variant, experts", [("vidprism", True), ("homogeneous", True), ("meanpool", False)])
def test_has_experts_says_what_the_built_head_holds(variant, experts):
    """The one rule the launch checks, DeepSpeed's MoE settings and the memory estimate use must agree with
    the head that is built (expert parallelism finds its experts by looking)."""
    from vidprism_ds.model.video_model import has_experts
    from vidprism_ds.parallel import find_expert_head

    cfg = load_config(None, TINY + [f"model.variant={variant}"])
    assert has_experts(cfg.model) is experts
    assert (find_expert_head(build_experiment_model(cfg, num_classes=3).model) is not None) is experts
