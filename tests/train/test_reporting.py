import math

import pytest
import torch

from vidprism_ds.train.reporting import expert_specialisation, format_eval_line


def test_specialisation_is_the_mean_off_diagonal_cosine_between_experts():
    same = torch.ones(3, 4, 8)  # every expert says the same thing
    assert abs(expert_specialisation(same) - 1.0) < 1e-6
    opposite = torch.stack([torch.ones(2, 8), -torch.ones(2, 8)], dim=1)  # 2 experts pointing apart
    assert abs(expert_specialisation(opposite) + 1.0) < 1e-6
    orthogonal = torch.eye(4)[None].expand(2, 4, 4)
    assert abs(expert_specialisation(orthogonal)) < 1e-7
    assert math.isnan(expert_specialisation(torch.randn(2, 1, 8)))  # one expert: nothing to compare


@pytest.mark.parametrize("num_classes, shown", [(4, "top-1 0.7500 (8 videos)"), (5, "top-1 0.7500 (8 videos)"),
                                                (6, "top-1 0.7500 top-5 0.9000 (8 videos)")])
def test_the_eval_line_shows_top_k_only_below_the_number_of_classes(num_classes, shown):
    assert format_eval_line("final", {1: 0.75, 5: 0.9}, 8, num_classes) == f"eval final: {shown}"
