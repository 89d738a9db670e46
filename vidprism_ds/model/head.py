"""The VidPrism temporal head: frame embeddings (B, T, D) -> video logits and auxiliary losses.

sampler per rate -> bidirectional fusion -> dispatcher(experts) -> attention readout -> heads.
One ``mode`` switch selects the official numerics or the fixed default (see docs/model.md).

A multirate clip (``burst_frames`` > 0, docs/model.md#multirate-clips-in-the-head) is a segment clip over
the whole video followed by a burst of consecutive source frames. The segment part takes the path above
unchanged; the fast rate groups (rate < ``slow_rate_min``) also read the burst part after their fused
segment tokens: every burst frame, then the change from each burst frame to the next, so the fast experts
see consecutive source frames and the slow experts the whole video. The burst is not pooled into windows of
r frames: a window of 2 frames, whether it keeps one frame or averages them, sees an on/off event with a
4-frame cycle as constant at half its phases; the changes cancel what stays the same in the burst (the
background), which the frames alone left to the experts to learn (docs/results.md, issue 29).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.experts import TemporalExpert
from vidprism_ds.model.fusion import BidirectionalFusion
from vidprism_ds.model.head_output import ExpertReadoutHead, HeadOutput
from vidprism_ds.model.packed_sampler import PackedSamples, sample_all_rates
from vidprism_ds.model.routing import RateGroupRouter
from vidprism_ds.model.sampler import ContentAwareSampler, StridedPoolSampler


def max_stream_length(num_frames: int, rate: int) -> int:
    return -(-num_frames // rate)


def burst_token_count(burst_frames: int) -> int:
    return 2 * burst_frames - 1 if burst_frames > 0 else 0


def burst_tokens(burst_bfd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What a fast expert reads of a multirate clip's F burst frames: the F frames, unpooled (no sampler
    window: a window of 2 frames sees an on/off event with a 4-frame cycle as constant at half its phases),
    then the F - 1 changes ``x[f + 1] - x[f]`` between consecutive frames, in which whatever stays the same
    over the burst (the background, the time encoding's constant gap terms) cancels. Returns the (B, 2F - 1,
    D) tokens and, per token, the burst frame it is (a change: its later frame), (B, 2F - 1)."""
    batch, frames = burst_bfd.shape[:2]
    changes_bfd = burst_bfd[:, 1:] - burst_bfd[:, :-1]
    frame_f = torch.arange(frames, device=burst_bfd.device)
    keep_bk = torch.cat([frame_f, frame_f[1:]]).expand(batch, -1)
    return torch.cat([burst_bfd, changes_bfd], dim=1), keep_bk


class VidPrismHead(ExpertReadoutHead):
    def __init__(self, dim: int, num_classes: int, cfg: HeadConfig, max_frames: int = 64, burst_frames: int = 0):
        super().__init__(cfg, max_frames, dim, burst_frames)
        rates = list(cfg.sampling_rates)
        self.rates = rates
        # the rate groups that also read a multirate clip's burst part: the fusion's fast streams
        self.reads_burst = [burst_frames > 0 and r < cfg.slow_rate_min for r in rates]
        if burst_frames > 0 and not any(self.reads_burst):
            raise ValueError(f"a multirate clip's burst needs a fast rate group; every rate of {rates} is >= "
                             f"slow_rate_min={cfg.slow_rate_min}")
        if cfg.use_sampler:
            self.samplers = nn.ModuleList([
                ContentAwareSampler(dim, r, tau=cfg.sampler_tau, alpha_mix=cfg.sampler_alpha_mix,
                                    score_temp=cfg.rank_score_temp, normalise_over_window=not self.official)
                for r in rates
            ])
        else:
            self.samplers = nn.ModuleList([StridedPoolSampler(r) for r in rates])
        self.fusion = (BidirectionalFusion(dim, rates, cfg.slow_rate_min, cfg.fusion_gate_threshold,
                                           official=self.official)
                       if cfg.use_fusion else None)
        # Keyed by global expert id (rate group g, member j -> g * experts_per_rate + j) so a rank
        # holding a subset keeps the same names.
        self.experts_per_rate = cfg.experts_per_rate
        self.experts = nn.ModuleDict({
            str(g * cfg.experts_per_rate + j): TemporalExpert(
                dim, cfg.expert_heads, cfg.expert_ffn_mult,
                max_positions=self._stream_length(max_frames, g) if cfg.expert_pos_embed else 0)
            for g in range(len(rates)) for j in range(cfg.experts_per_rate)
        })
        # One expert per rate is the paper's model: no router at all.
        self.routers = (nn.ModuleList([RateGroupRouter(dim, cfg.experts_per_rate, cfg.router_topk,
                                                       cfg.router_capacity_factor) for _ in rates])
                        if cfg.experts_per_rate > 1 else None)
        self._build_readout_and_outputs(dim, num_classes, cfg.readout_heads)

    @property
    def num_experts(self) -> int:
        return len(self.rates) * self.experts_per_rate

    def _stream_length(self, num_frames: int, group: int) -> int:
        """Tokens per clip of rate group ``group``'s stream: its segment tokens, then its burst tokens."""
        rate = self.rates[group]
        length = max_stream_length(num_frames - self.burst_frames, rate)
        return length + (burst_token_count(self.burst_frames) if self.reads_burst[group] else 0)

    def expert_stream_lengths(self, num_frames: int) -> list[int]:
        """Tokens per clip that each global expert reads (for load-balanced expert placement)."""
        return [self._stream_length(num_frames, g) for g in range(len(self.rates)) for _ in range(self.experts_per_rate)]

    def forward(self, x_btd: torch.Tensor, frame_times: Optional[torch.Tensor] = None,
                importance_prior_bt: Optional[torch.Tensor] = None) -> HeadOutput:
        """``frame_times``: (B, T) seconds of each frame, or None (segment clips, the paper's path)."""
        compute_rank = self.training
        x_btd = self._with_frame_times(x_btd, frame_times)
        split = x_btd.shape[1] - self.burst_frames  # where the burst part starts (T without one)
        prior_bt = importance_prior_bt[:, :split] if importance_prior_bt is not None else None
        sampled = self._sample(list(self.samplers), x_btd[:, :split], prior_bt, compute_rank)
        streams = sampled.streams
        if self.fusion is not None:
            streams = self.fusion(streams)
        keep_indices = sampled.keep_indices
        if self.burst_frames:
            # the fast groups also read the burst part (burst_tokens); its tokens follow their fused segment
            # tokens (the fusion runs on the segment streams, whose lengths it is built for)
            tokens_bkd, keep_bk = burst_tokens(x_btd[:, split:])
            for g in range(len(self.rates)):
                if self.reads_burst[g]:
                    streams[g] = torch.cat([streams[g], tokens_bkd], dim=1)
                    keep_indices[g] = torch.cat([keep_indices[g], keep_bk + split], dim=1)
        expert_outputs, router_aux, router_z = self._run_experts(streams)
        return self._read_out(expert_outputs, x_btd, rank_loss=sampled.rank_loss_r.mean(),
                              router_aux_loss=router_aux, router_z_loss=router_z, keep_indices=keep_indices)

    @staticmethod
    def _sample(samplers: list, x_btd: torch.Tensor, prior_bt: Optional[torch.Tensor],
                compute_rank: bool) -> PackedSamples:
        """Every given rate's sampler on ``x_btd``: the content-aware ones in one packed computation, the
        ablation's strided pooling one by one."""
        if all(isinstance(s, ContentAwareSampler) for s in samplers):
            return sample_all_rates(samplers, x_btd, compute_rank, prior_bt)
        outs = [s(x_btd, compute_rank_loss=compute_rank, importance_prior_bt=prior_bt) for s in samplers]
        return PackedSamples([o.stream_bld for o in outs], [o.keep_index_bl for o in outs],
                             torch.stack([o.rank_loss for o in outs]))

    def _run_experts(self, streams: list[torch.Tensor]):
        """Streams (one per rate) -> one output per rate, plus router losses when experts are routed."""
        if self.routers is None:
            return self.dispatcher(streams, self.experts), None, None
        routed = [router.route(stream) for router, stream in zip(self.routers, streams)]
        expert_inputs = [x for r in routed for x in r.expert_inputs]
        expert_outputs = self.dispatcher(expert_inputs, self.experts)
        n = self.experts_per_rate
        rate_outputs = [RateGroupRouter.combine(r, expert_outputs[g * n:(g + 1) * n], streams[g].shape[0])
                        for g, r in enumerate(routed)]
        aux = torch.stack([r.aux_loss for r in routed]).mean()
        z = torch.stack([r.z_loss for r in routed]).mean()
        return rate_outputs, aux, z
