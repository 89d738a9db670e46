"""Content-aware multi-rate sampling (docs/model.md#content-aware-sampler), vectorised over clips and windows.

For a rate r the T frame tokens are cut into consecutive windows of r (the last may be shorter).
Each window keeps its most salient token and folds the others into it, weighted by how strongly
they attend to the kept one. The official code loops over windows and over clips in Python; here
the windows are laid out as a padded (B, n_windows, r, D) tensor and every step is a batched op with
a validity mask, so the number of launched operators does not depend on B or T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Numerical guards copied in meaning from the official recipe: the clamp inside the KL and the
# epsilon in the merge-weight denominator change results at the 1e-6 level and are kept exact.
_KL_CLAMP = 1e-9
_MERGE_EPS = 1e-6


@dataclass
class SamplerOutput:
    stream_bld: torch.Tensor  # (B, ceil(T / r), D)
    rank_loss: torch.Tensor  # scalar; 0 when not computed
    keep_index_bl: torch.Tensor  # (B, n_windows) absolute frame index kept per window


def _window_layout(num_frames: int, rate: int, device: torch.device) -> tuple[int, int, torch.Tensor]:
    """Number of windows, padding, and the (n_windows, rate) validity mask of real frames."""
    n_windows = math.ceil(num_frames / rate)
    pad = n_windows * rate - num_frames
    positions = torch.arange(n_windows * rate, device=device).view(n_windows, rate)
    return n_windows, pad, positions < num_frames


class ContentAwareSampler(nn.Module):
    """One rate's sampler: keeps one token per window of ``rate`` frames.

    ``normalise_over_window`` selects the merge weights. True (default mode) uses the method's
    ``w_j = A[j,k] / (sum_j' A[j',k] + eps)``, a convex combination of the other tokens. False
    reproduces the official code, which divides each ``A[j,k]`` by itself (its sum runs over the
    keep axis of size 1), so every other token is added with weight ~1.
    """

    def __init__(self, dim: int, rate: int, tau: float = 0.1, alpha_mix: float = 0.7,
                 score_temp: float = 0.2, normalise_over_window: bool = True):
        super().__init__()
        self.rate = rate
        self.tau = tau
        self.alpha_mix = alpha_mix
        self.score_temp = score_temp
        self.normalise_over_window = normalise_over_window
        # Names follow the official state dict (pooling_layers.{e}.metric_proj / score_head.{0,1}).
        self.metric_proj = nn.Linear(dim, dim)
        self.score_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1, bias=False))

    def forward(self, x_btd: torch.Tensor, compute_rank_loss: bool = False,
                importance_prior_bt: Optional[torch.Tensor] = None) -> SamplerOutput:
        batch, num_frames, dim = x_btd.shape
        rate = self.rate
        n_windows, pad, valid_nr = _window_layout(num_frames, rate, x_btd.device)
        x_bnrd = F.pad(x_btd, (0, 0, 0, pad)).view(batch, n_windows, rate, dim)

        z_bnrd = self.metric_proj(x_bnrd)
        metric_bnrd = F.normalize(z_bnrd, dim=-1)
        sim_bnrr = metric_bnrd @ metric_bnrd.transpose(-1, -2)
        eye_rr = torch.eye(rate, dtype=torch.bool, device=x_btd.device)
        sim_bnrr = sim_bnrr.masked_fill(eye_rr, 0.0)  # diagonal 0, not -inf (official)

        score_bnr = self.score_head(z_bnrd).squeeze(-1)
        norm_bnr = x_bnrd.norm(dim=-1)
        mix_bnr = self.alpha_mix * score_bnr + (1.0 - self.alpha_mix) * norm_bnr
        mix_bnr = mix_bnr.masked_fill(~valid_nr, float("-inf"))
        keep_bn = mix_bnr.argmax(dim=-1)

        # A = softmax(S / tau) row-wise over the window's real tokens; column k = kept token.
        attn_bnrr = (sim_bnrr / self.tau).masked_fill(~valid_nr[:, None, :], float("-inf")).softmax(dim=-1)
        keep_idx_bnr1 = keep_bn[..., None, None].expand(batch, n_windows, rate, 1)
        to_kept_bnr = attn_bnrr.gather(-1, keep_idx_bnr1).squeeze(-1)  # A[j, k]
        not_kept_bnr = torch.arange(rate, device=x_btd.device) != keep_bn[..., None]
        rest_bnr = valid_nr & not_kept_bnr
        to_kept_bnr = to_kept_bnr.masked_fill(~rest_bnr, 0.0)
        if self.normalise_over_window:
            weight_bnr = to_kept_bnr / (to_kept_bnr.sum(dim=-1, keepdim=True) + _MERGE_EPS)
        else:
            weight_bnr = to_kept_bnr / (to_kept_bnr + _MERGE_EPS)

        kept_bnd = x_bnrd.gather(2, keep_bn[..., None, None].expand(batch, n_windows, 1, dim)).squeeze(2)
        merged_bnd = (weight_bnr.unsqueeze(-1) * x_bnrd).sum(dim=2)
        stream_bnd = kept_bnd + 0.5 * merged_bnd

        if compute_rank_loss:
            rank_loss = self._rank_loss(score_bnr, norm_bnr, sim_bnrr, valid_nr, importance_prior_bt, pad)
        else:
            rank_loss = x_btd.new_zeros(())
        window_start_n = torch.arange(n_windows, device=x_btd.device) * rate
        return SamplerOutput(stream_bnd, rank_loss, keep_bn + window_start_n)

    def _rank_loss(self, score_bnr: torch.Tensor, norm_bnr: torch.Tensor, sim_bnrr: torch.Tensor,
                   valid_nr: torch.Tensor, prior_bt: Optional[torch.Tensor], pad: int) -> torch.Tensor:
        """KL(p_target || p_predicted) per window, mean over clips and windows of >= 2 frames."""
        batch, n_windows, rate = score_bnr.shape
        window_len_n = valid_nr.sum(dim=-1)
        if prior_bt is not None:
            target_bnr = F.pad(prior_bt.detach(), (0, pad)).view(batch, n_windows, rate)
        else:
            # ||x|| + mean_j S[:, j]; the mean divides by the window length, zeroed diagonal included
            col_mean_bnr = sim_bnrr.masked_fill(~valid_nr[:, :, None], 0.0).sum(dim=-2) / window_len_n[:, None]
            target_bnr = (norm_bnr + col_mean_bnr).detach()
        invalid = ~valid_nr
        p_pred = (score_bnr / self.score_temp).masked_fill(invalid, float("-inf")).softmax(-1)
        p_tgt = (target_bnr / self.score_temp).masked_fill(invalid, float("-inf")).softmax(-1)
        kl_bn = (p_tgt * (p_tgt.clamp_min(_KL_CLAMP).log() - p_pred.clamp_min(_KL_CLAMP).log())).sum(-1)
        # Single-frame windows pass through and carry no loss. Only the last window can be short,
        # and its length is known from the shapes, so this is a static slice (no host sync).
        last_window_len = rate - pad
        if rate <= 1:
            n_scored = 0
        else:
            n_scored = n_windows - 1 if last_window_len <= 1 else n_windows
        if n_scored == 0:
            return score_bnr.new_zeros(())
        return kl_bn[:, :n_scored].mean()


class StridedPoolSampler(nn.Module):
    """Ablation "without the sampler": plain mean pooling over each window of ``rate`` frames."""

    def __init__(self, rate: int):
        super().__init__()
        self.rate = rate

    def forward(self, x_btd: torch.Tensor, compute_rank_loss: bool = False,
                importance_prior_bt: Optional[torch.Tensor] = None) -> SamplerOutput:
        batch, num_frames, dim = x_btd.shape
        n_windows, pad, valid_nr = _window_layout(num_frames, self.rate, x_btd.device)
        x_bnrd = F.pad(x_btd, (0, 0, 0, pad)).view(batch, n_windows, self.rate, dim)
        stream_bnd = x_bnrd.sum(dim=2) / valid_nr.sum(dim=-1).to(x_btd.dtype)[:, None]
        window_start_bn = (torch.arange(n_windows, device=x_btd.device) * self.rate).expand(batch, n_windows)
        return SamplerOutput(stream_bnd, x_btd.new_zeros(()), window_start_bn)
