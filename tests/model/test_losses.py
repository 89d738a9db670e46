import pytest
import torch
import torch.nn.functional as F

from vidprism_ds.config.schema import HeadConfig, LossWeights
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.model.losses import (
    balance_loss,
    combine_losses,
    diversity_between_experts,
    official_diversity,
    text_contrastive_loss,
)


def test_official_diversity_is_over_pairs_of_clips():
    g = torch.Generator().manual_seed(0)
    e_bed = torch.randn(5, 4, 8, generator=g)
    expected, pairs = 0.0, 0
    for i in range(5):
        for j in range(i + 1, 5):
            expected += 1.0 - F.cosine_similarity(e_bed[i], e_bed[j], dim=-1).mean()
            pairs += 1
    torch.testing.assert_close(official_diversity(e_bed), expected / pairs)
    assert official_diversity(e_bed[:1]) == 0


def test_diversity_between_experts_is_mean_off_diagonal_cosine():
    g = torch.Generator().manual_seed(1)
    e_bed = torch.randn(3, 4, 8, generator=g)
    total = 0.0
    for b in range(3):
        sims = [F.cosine_similarity(e_bed[b, i], e_bed[b, j], dim=0) for i in range(4) for j in range(4) if i != j]
        total += torch.stack(sims).mean()
    torch.testing.assert_close(diversity_between_experts(e_bed), total / 3)


def test_diversity_signs_default_pushes_experts_apart_official_pulls_clips_together():
    """One gradient step on each term: the default lowers expert similarity, the official raises clip similarity."""
    g = torch.Generator().manual_seed(2)
    e_bed = torch.randn(4, 3, 8, generator=g, requires_grad=True)
    diversity_between_experts(e_bed).backward()
    stepped = e_bed - 0.5 * e_bed.grad
    assert diversity_between_experts(stepped) < diversity_between_experts(e_bed)
    e_bed.grad = None
    official_diversity(e_bed).backward()
    stepped = e_bed - 0.5 * e_bed.grad
    # lower official loss = clips more alike
    assert official_diversity(stepped) < official_diversity(e_bed)


def test_balance_loss_minimum_at_uniform_weights():
    uniform = torch.full((6, 4), 0.25)
    skewed = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 6)
    torch.testing.assert_close(balance_loss(uniform), torch.tensor(1.0))
    torch.testing.assert_close(balance_loss(skewed), torch.tensor(4 * (0.49 + 3 * 0.01)))


def test_contrastive_has_no_temperature():
    proj = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    # cosine logits are exactly [[1, 0], [0, 1]]
    expected = F.cross_entropy(torch.eye(2), labels)
    torch.testing.assert_close(text_contrastive_loss(proj, text, labels), expected)


def test_combine_uses_configured_weights():
    torch.manual_seed(0)
    head = VidPrismHead(16, 5, HeadConfig()).train()
    out = head(torch.randn(4, 16, 16))
    labels = torch.tensor([0, 1, 2, 3])
    text = torch.randn(5, 16)
    w = LossWeights(ce=1.0, balance=0.5, contrastive=0.25, diversity=2.0, rank=3.0)
    parts = combine_losses(w, out, labels, text)
    expected = (F.cross_entropy(out.logits, labels) + 0.5 * out.balance_loss + 0.25 * parts.terms["contrastive"]
                + 2.0 * out.diversity_loss + 3.0 * out.rank_loss)
    torch.testing.assert_close(parts.total, expected)
    assert set(parts.terms) >= {"ce", "balance", "contrastive", "diversity", "rank"}


def test_contrastive_weight_without_text_is_an_error():
    head = VidPrismHead(16, 5, HeadConfig())
    out = head(torch.randn(2, 16, 16))
    with pytest.raises(ValueError, match="contrastive"):
        combine_losses(LossWeights(), out, torch.tensor([0, 1]), None)
    parts = combine_losses(LossWeights(contrastive=0.0), out, torch.tensor([0, 1]), None)
    assert "contrastive" not in parts.terms
