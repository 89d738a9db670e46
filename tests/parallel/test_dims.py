"""ParallelDims: the sizes and ranks of a run's layout, and the errors that name the key."""

import pytest

from vidprism_ds.config.schema import ConfigError
from vidprism_ds.parallel.dims import ParallelDims


def test_sizes_of_a_tensor_and_expert_parallel_layout():
    dims = ParallelDims(world_size=16, tp_size=2, ep_size=4)
    assert (dims.dp_size, dims.expert_dp_size) == (8, 2)
    # rank 13: TP group 6 (ranks 12, 13), its second member; data-parallel rank 6; EP groups are runs of
    # 4 data-parallel ranks, so it is the third of the second run, and the second copy of its experts
    assert (dims.dp_rank(13), dims.tp_rank(13), dims.ep_rank(13), dims.expert_data_rank(13)) == (6, 1, 2, 1)


def test_without_tensor_parallelism_every_process_reads_its_own_data():
    dims = ParallelDims(world_size=4, ep_size=2)
    assert dims.dp_size == 4 and [dims.ep_rank(r) for r in range(4)] == [0, 1, 0, 1]
    assert [dims.expert_data_rank(r) for r in range(4)] == [0, 0, 1, 1]
    assert dims.dp_size_names() == ("world size", "processes")
    assert ParallelDims(8, tp_size=4).dp_size_names()[0] == "data-parallel size (world size 8 / parallel.tp_size 4)"


def test_sizes_that_do_not_divide_name_the_key():
    ParallelDims(world_size=4, tp_size=2, ep_size=2)
    with pytest.raises(ConfigError, match=r"^parallel\.tp_size: 2 does not divide the world size 3"):
        ParallelDims(world_size=3, tp_size=2)
    with pytest.raises(ConfigError, match=r"^parallel\.ep_size: 2 does not divide the data-parallel size 1"):
        ParallelDims(world_size=2, tp_size=2, ep_size=2)
    with pytest.raises(ConfigError, match=r"^parallel\.ep_size: 3 does not divide the world size 4"):
        ParallelDims(world_size=4, ep_size=3)
    with pytest.raises(ConfigError, match=r"^parallel\.tp_size: 0 does not divide"):
        ParallelDims(world_size=4, tp_size=0)
