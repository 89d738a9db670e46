import math

import torch

from vidprism_ds.train.reporting import expert_specialisation


def test_specialisation_is_the_mean_off_diagonal_cosine_between_experts():
    same = torch.ones(3, 4, 8)  # every expert says the same thing
    assert abs(expert_specialisation(same) - 1.0) < 1e-6
    opposite = torch.stack([torch.ones(2, 8), -torch.ones(2, 8)], dim=1)  # 2 experts pointing apart
    assert abs(expert_specialisation(opposite) + 1.0) < 1e-6
    orthogonal = torch.eye(4)[None].expand(2, 4, 4)
    assert abs(expert_specialisation(orthogonal)) < 1e-7
    assert math.isnan(expert_specialisation(torch.randn(2, 1, 8)))  # one expert: nothing to compare
