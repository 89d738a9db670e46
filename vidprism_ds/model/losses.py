"""Loss terms of VidPrism (docs/model.md#heads-and-losses) and their weighted sum.

The weights come from the config (``LossWeights``); nothing here or in the training loop hard-codes
them. Each term is a function of tensors so the tests can check it against a loop reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidprism_ds.config.schema import LossWeights


def balance_loss(expert_weights_be: torch.Tensor) -> torch.Tensor:
    """``E * sum_e (mean_b w_be)^2``: smallest when the readout spreads its mass evenly."""
    num_experts = expert_weights_be.shape[-1]
    importance_e = expert_weights_be.mean(dim=0)
    return num_experts * (importance_e * importance_e).sum()


def diversity_between_experts(expert_means_bed: torch.Tensor) -> torch.Tensor:
    """Mean off-diagonal cosine similarity between experts' mean outputs, per clip, then over clips.

    Minimising it pushes experts apart (the default mode's diversity term). The same quantity is
    the "expert-specialisation" figure that training logs.
    """
    num_experts = expert_means_bed.shape[1]
    if num_experts < 2:
        return expert_means_bed.new_zeros(())
    unit_bed = F.normalize(expert_means_bed, dim=-1)
    cos_bee = unit_bed @ unit_bed.transpose(1, 2)
    off_diag_sum_b = cos_bee.sum(dim=(1, 2)) - cos_bee.diagonal(dim1=1, dim2=2).sum(dim=-1)
    return (off_diag_sum_b / (num_experts * (num_experts - 1))).mean()


def official_diversity(expert_means_bed: torch.Tensor) -> torch.Tensor:
    """The official term: over pairs of *clips* (i < j), ``1 - mean_e cos(E[i, e], E[j, e])``.

    Despite its name, minimising it pulls different clips' expert outputs together. Kept for the
    official mode only.
    """
    batch = expert_means_bed.shape[0]
    if batch < 2:
        return expert_means_bed.new_zeros(())
    unit_bed = F.normalize(expert_means_bed, dim=-1, eps=1e-8)
    mean_cos_bb = torch.einsum("ied,jed->ij", unit_bed, unit_bed) / expert_means_bed.shape[1]
    # Integer indices of the pairs i < j (row-major, the order a boolean triu mask selects): a boolean mask
    # index is a data-dependent nonzero, which breaks a torch.compile graph; these have a static shape.
    rows, cols = torch.triu_indices(batch, batch, offset=1, device=expert_means_bed.device)
    return (1.0 - mean_cos_bb[rows, cols]).mean()


def text_contrastive_loss(projection_bd: torch.Tensor, text_cd: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """CE over cosine similarities to the class text embeddings (no temperature, as official).

    In fp32 whatever the model's dtype: the projection may be bf16 while the cached text embeddings are
    fp32, and cosine logits in [-1, 1] lose most of their resolution in bf16."""
    logits_bc = F.normalize(projection_bd.float(), dim=-1) @ F.normalize(text_cd.float(), dim=-1).t()
    return F.cross_entropy(logits_bc, labels_b)


@dataclass
class LossBreakdown:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]  # unweighted values, for logging


def combine_losses(weights: LossWeights, output, labels_b: torch.Tensor,
                   text_cd: torch.Tensor | None = None) -> LossBreakdown:
    """Weighted sum of every term the head produced. ``output`` is a ``HeadOutput``.

    The contrastive term needs class text embeddings; without them its weight must be 0. Every term and
    the total are fp32 (autocast's rule for losses): under bf16 training the head's outputs are bf16,
    and a bf16 cross-entropy or a bf16 sum of small regularisers rounds away what they add.
    """
    terms = {"ce": F.cross_entropy(output.logits.float(), labels_b),
             "balance": output.balance_loss.float(),
             "diversity": output.diversity_loss.float(),
             "rank": output.rank_loss.float(),
             "router_aux": output.router_aux_loss.float(),
             "router_z": output.router_z_loss.float()}
    if text_cd is not None:
        terms["contrastive"] = text_contrastive_loss(output.projection, text_cd, labels_b)
    elif weights.contrastive > 0:
        raise ValueError("model.loss.contrastive > 0 needs class text embeddings; pass text_cd or set the weight to 0")
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return LossBreakdown(total=total, terms=terms)
