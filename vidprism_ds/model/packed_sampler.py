"""Every rate's content-aware sampler in one computation (docs/model.md#content-aware-sampler).

``ContentAwareSampler`` computes one rate on a padded (B, n_windows, r, D) layout; run once per rate
it launches ~200 operators forward and backward. Here all rates work on the frames' own (B, T) layout:
the R samplers' projections are one GEMM over their concatenated weights, each rate's windows are a
constant (T, T) "same window" mask, so the similarity, the keep rule (an argmax over the masked row,
first index on ties, as before), the attention weights and the rank loss are masked (B, R, T, T) ops,
and the merge of every window of every rate is one (B, W, T) x (B, T, D) matmul into a packed stream
(W = the windows of all rates, at static offsets). Masked-out entries are exact zeros (an ``exp`` of
-inf, a product with 0), so each window's values are those of the per-rate sampler up to summation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from vidprism_ds.model.head_constants import ConstantCache, stack_parameters
from vidprism_ds.model.sampler import _KL_CLAMP, _MERGE_EPS, ContentAwareSampler

_CONSTANTS = ConstantCache()


@dataclass
class PackedSamples:
    streams: list[torch.Tensor]  # per sampler, (B, ceil(T / r), D)
    keep_indices: list[torch.Tensor]  # per sampler, (B, n_windows) frame kept in each window
    rank_loss_r: torch.Tensor  # (R,) each sampler's rank loss; zeros when not computed


class _Layout:
    """Constant masks of R rates over T frames."""

    def __init__(self, rates: tuple[int, ...], num_frames: int, device: torch.device, dtype: torch.dtype):
        t = torch.arange(num_frames, device=device)
        window_rt = torch.stack([t // r for r in rates])
        self.same_rtt = window_rt[:, :, None] == window_rt[:, None, :]
        self.diagonal_tt = torch.eye(num_frames, dtype=torch.bool, device=device)
        self.frame_t = t
        self.n_windows = [-(-num_frames // r) for r in rates]
        # member_wrt[w, g, t]: frame t is in window w, a window of rate g (windows of all rates in order)
        member = torch.zeros(sum(self.n_windows), len(rates), num_frames, dtype=dtype, device=device)
        starts, w = [], 0
        scored_weight_rt = torch.zeros(len(rates), num_frames, dtype=dtype, device=device)
        for g, (r, n) in enumerate(zip(rates, self.n_windows)):
            lengths = [min(r, num_frames - k * r) for k in range(n)]
            n_scored = sum(length >= 2 for length in lengths)  # windows of >= 2 frames carry the loss
            for k, length in enumerate(lengths):
                member[w, g, k * r:k * r + length] = 1.0
                starts.append(g * num_frames + k * r)
                if length >= 2:
                    # each of the window's rows holds the window's KL: 1/length per row, mean over windows
                    scored_weight_rt[g, k * r:k * r + length] = 1.0 / (length * n_scored)
                w += 1
        self.member_wrt = member
        self.window_start_w = torch.tensor(starts, device=device)
        self.window_len_rt = self.same_rtt.sum(dim=-1).to(dtype)
        self.scored_weight_rt = scored_weight_rt


def _stack(samplers: list[ContentAwareSampler], getter) -> torch.Tensor:
    return stack_parameters([getter(s) for s in samplers])


def sample_all_rates(samplers: list[ContentAwareSampler], x_btd: torch.Tensor, compute_rank_loss: bool,
                     importance_prior_bt: Optional[torch.Tensor] = None) -> PackedSamples:
    batch, num_frames, dim = x_btd.shape
    first = samplers[0]
    rates = tuple(s.rate for s in samplers)
    layout: _Layout = _CONSTANTS.get((rates, num_frames, x_btd.device, x_btd.dtype),
                                     lambda: _Layout(rates, num_frames, x_btd.device, x_btd.dtype))
    n_rates = len(samplers)
    weight_rdd = _stack(samplers, lambda s: s.metric_proj.weight)
    bias_rd = _stack(samplers, lambda s: s.metric_proj.bias)
    z_brtd = F.linear(x_btd, weight_rdd.view(n_rates * dim, dim), bias_rd.view(-1)).view(
        batch, num_frames, n_rates, dim).transpose(1, 2)
    metric_brtd = F.normalize(z_brtd, dim=-1)
    sim_brtt = (metric_brtd @ metric_brtd.transpose(-1, -2)).masked_fill(layout.diagonal_tt, 0.0)

    norm_gain_rd = _stack(samplers, lambda s: s.score_head[0].weight)
    norm_bias_rd = _stack(samplers, lambda s: s.score_head[0].bias)
    score_w_rd = _stack(samplers, lambda s: s.score_head[1].weight[0])
    normed_brtd = torch.addcmul(norm_bias_rd[:, None], F.layer_norm(z_brtd, (dim,), eps=first.score_head[0].eps),
                                norm_gain_rd[:, None])
    score_brt = (normed_brtd * score_w_rd[:, None]).sum(dim=-1)  # each rate's bias-free Linear(D, 1)
    norm_b1t = x_btd.norm(dim=-1).unsqueeze(1)
    mix_brt = first.alpha_mix * score_brt + (1.0 - first.alpha_mix) * norm_b1t
    outside_rtt = ~layout.same_rtt
    # row t: the kept frame of t's window
    keep_brt = mix_brt[:, :, None, :].masked_fill(outside_rtt, float("-inf")).argmax(dim=-1)

    attn_brtt = (sim_brtt / first.tau).masked_fill(outside_rtt, float("-inf")).softmax(dim=-1)
    to_kept_brt = attn_brtt.gather(-1, keep_brt.unsqueeze(-1)).squeeze(-1)  # A[t, k(t)]
    is_kept_brt = keep_brt == layout.frame_t
    to_kept_brt = to_kept_brt.masked_fill(is_kept_brt, 0.0)
    if first.normalise_over_window:
        window_sum_brt = (to_kept_brt[:, :, None, :] * layout.same_rtt).sum(dim=-1)
        weight_brt = to_kept_brt / (window_sum_brt + _MERGE_EPS)
    else:
        weight_brt = to_kept_brt / (to_kept_brt + _MERGE_EPS)
    coef_brt = torch.where(is_kept_brt, 1.0, 0.5 * weight_brt)
    merge_bwt = (layout.member_wrt * coef_brt[:, None]).sum(dim=2)
    streams = list((merge_bwt @ x_btd).split(layout.n_windows, dim=1))
    keep_indices = list(keep_brt.flatten(1)[:, layout.window_start_w].split(layout.n_windows, dim=1))

    if compute_rank_loss:
        rank_r = _rank_losses(first.score_temp, score_brt, norm_b1t, sim_brtt, layout, importance_prior_bt)
    else:
        rank_r = x_btd.new_zeros(n_rates)
    return PackedSamples(streams, keep_indices, rank_r)


def _rank_losses(score_temp: float, score_brt: torch.Tensor, norm_b1t: torch.Tensor, sim_brtt: torch.Tensor,
                 layout: _Layout, prior_bt: Optional[torch.Tensor]) -> torch.Tensor:
    """Per rate, KL(p_target || p_pred) per window, mean over clips and windows of >= 2 frames -> (R,).

    Row t of the (B, R, T, T) tensors is the distribution over t's window, so every row of a window
    holds the window's KL; ``scored_weight_rt`` averages them back to one value per window."""
    outside_rtt = ~layout.same_rtt
    if prior_bt is not None:
        target_b1t = prior_bt.detach().unsqueeze(1)
    else:
        # ||x|| + mean_j S[j, t] over t's window; the mean divides by the window length, zeroed diagonal included
        col_mean_brt = (sim_brtt * layout.same_rtt).sum(dim=-2) / layout.window_len_rt
        target_b1t = (norm_b1t + col_mean_brt).detach()
    p_pred = (score_brt / score_temp)[:, :, None, :].masked_fill(outside_rtt, float("-inf")).softmax(-1)
    p_tgt = (target_b1t / score_temp)[:, :, None, :].masked_fill(outside_rtt, float("-inf")).softmax(-1)
    kl_brt = (p_tgt * (p_tgt.clamp_min(_KL_CLAMP).log() - p_pred.clamp_min(_KL_CLAMP).log())).sum(-1)
    return (kl_brt * layout.scored_weight_rt).sum(dim=(0, 2)) / score_brt.shape[0]
