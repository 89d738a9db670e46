"""Each rule of vidprism_ds/config/validation.py is written once: where the model or the expert placement is
built from plain arguments rather than a config, the same rule refuses the same value with the same line."""

import pytest

from vidprism_ds.config import ConfigError, load_config
from vidprism_ds.config.schema import BackboneConfig, HeadConfig
from vidprism_ds.config.validation import CheckpointingPolicy, parse_checkpointing


def _config_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    return str(err.value)


def _router_with_too_many_picks():
    from vidprism_ds.model.routing import RateGroupRouter
    RateGroupRouter(dim=8, num_experts=2, topk=3, capacity_factor=None)


def _homogeneous_head_with_routed_experts():
    from vidprism_ds.model.homogeneous_head import HomogeneousHead
    HomogeneousHead(8, 3, HeadConfig(experts_per_rate=2, router_topk=1))


def _placement_over_three_ranks():
    from vidprism_ds.parallel.placement import place_experts
    place_experts([1.0, 1.0, 1.0, 1.0], 3)


def _unknown_arch():
    from vidprism_ds.model.backbone import clip_model_config
    clip_model_config("RN50", 224)


def _trainable_blocks_without_partial_freeze():
    from vidprism_ds.model.backbone import build_frame_encoder
    build_frame_encoder(BackboneConfig(arch="tiny", image_size=32, trainable_blocks=1))


@pytest.mark.parametrize("overrides, build", [
    (["model.head.experts_per_rate=2", "model.head.router_topk=3"], _router_with_too_many_picks),
    (["model.variant=homogeneous", "model.head.experts_per_rate=2", "model.head.router_topk=1"],
     _homogeneous_head_with_routed_experts),
    (["parallel.ep_size=3"], _placement_over_three_ranks),
    (["model.backbone.arch=RN50"], _unknown_arch),
    (["model.backbone.trainable_blocks=1"], _trainable_blocks_without_partial_freeze),
])
def test_the_config_and_the_code_that_builds_refuse_with_the_same_line(overrides, build):
    from_config = _config_error(overrides)
    with pytest.raises(ConfigError) as from_code:
        build()
    assert str(from_code.value) == from_config


def test_trainable_blocks_beyond_the_built_backbone_name_its_block_count():
    """The one part of the rule only the built backbone can check: how many blocks it has."""
    from vidprism_ds.model.backbone import build_frame_encoder
    with pytest.raises(ConfigError, match=r"^model\.backbone\.trainable_blocks: 3 is outside \[0, 2\] \(the "
                                          r"backbone has 2 transformer blocks\)"):
        build_frame_encoder(BackboneConfig(arch="tiny", image_size=32, freeze="partial", trainable_blocks=3))


def test_the_launch_check_refuses_an_ep_size_below_one_as_the_config_does():
    from vidprism_ds.parallel import ParallelDims
    with pytest.raises(ConfigError) as err:
        ParallelDims(world_size=2, ep_size=0)
    assert str(err.value) == _config_error(["parallel.ep_size=0"])


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("none", "none"), ("full", "full"),
                                             ("blocks:3", "blocks:3"), (True, "full"), (False, "none")])
def test_grad_checkpointing_takes_a_policy(value, expected):
    cfg = load_config(None, [f"model.backbone.grad_checkpointing={str(value).lower()}"])
    assert str(parse_checkpointing(cfg.model.backbone.grad_checkpointing)) == expected


@pytest.mark.parametrize("value", ["some", "blocks:2.5", "blocks:-1", "blocks:two", "layers:2"])
def test_a_checkpointing_policy_it_does_not_know_names_the_key(value):
    with pytest.raises(ConfigError, match=r"model\.backbone\.grad_checkpointing: .* is not one of auto, none, full, blocks:K"):
        load_config(None, [f"model.backbone.grad_checkpointing={value}"])


def test_a_policy_counts_blocks_among_those_that_train():
    assert parse_checkpointing("full").checkpointed_blocks(12) == 12
    assert parse_checkpointing("blocks:4").checkpointed_blocks(12) == 4
    assert str(CheckpointingPolicy.of_count(12, 12)) == "full" and str(CheckpointingPolicy.of_count(0, 12)) == "none"
    with pytest.raises(ConfigError, match="blocks:13 asks for more blocks than the 12"):
        parse_checkpointing("blocks:13").checkpointed_blocks(12)
