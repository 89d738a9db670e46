import pytest
from torch import nn

from vidprism_ds.config.schema import ConfigError, HeadConfig
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.parallel import place_experts, plan_placement


def test_each_rank_gets_equal_count_and_balanced_cost():
    costs = [16.0, 8.0, 4.0, 2.0]
    placement = place_experts(costs, 2)
    assert placement.local_experts(0) == [0, 3] and placement.local_experts(1) == [1, 2]
    # DeepSpeed's contiguous layout would give loads 24 vs 6.
    assert max(placement.load(costs)) == 18.0


def test_placement_is_a_partition_and_deterministic():
    costs = [5.0, 5.0, 3.0, 3.0, 1.0, 1.0, 9.0, 2.0]
    placement = place_experts(costs, 4)
    held = sorted(e for k in range(4) for e in placement.local_experts(k))
    assert held == list(range(8))
    assert all(len(placement.local_experts(k)) == 2 for k in range(4))
    assert placement == place_experts(list(costs), 4)


def test_ep_size_must_divide_expert_count():
    with pytest.raises(ConfigError, match=r"^parallel\.ep_size: 3 does not divide the model's 4 experts"):
        place_experts([1.0] * 4, 3)


def test_head_placement_puts_fast_and_slow_experts_together():
    head = VidPrismHead(32, 5, HeadConfig(sampling_rates=[1, 2, 4, 8]), max_frames=32)
    placement = plan_placement(head, 2)
    # Stream lengths 32, 16, 8, 4: the 32-token expert shares a rank with the 4-token one.
    assert placement.local_experts(0) == [0, 3]


def test_scaled_experts_spread_each_rate_group_over_ranks():
    head = VidPrismHead(32, 5, HeadConfig(sampling_rates=[2, 4], experts_per_rate=2), max_frames=16)
    placement = plan_placement(head, 2)
    # Experts 0,1 read 8 tokens, 2,3 read 4: each rank gets one of each rate.
    assert placement.local_experts(0) == [0, 2] and placement.local_experts(1) == [1, 3]
