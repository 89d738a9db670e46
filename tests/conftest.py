import os

import pytest
import torch

# Two cores: keep intra-op threads at the machine's count and deterministic algorithms where cheap.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    from tests.tiny_runs import make_tiny_shards

    return make_tiny_shards(tmp_path_factory.mktemp("tiny_synthetic"))
