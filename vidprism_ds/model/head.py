"""The VidPrism temporal head: frame embeddings (B, T, D) -> video logits and auxiliary losses.

sampler per rate -> bidirectional fusion -> dispatcher(experts) -> attention readout -> heads.
One ``mode`` switch selects the official numerics or the fixed default (see docs/model.md).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.experts import TemporalExpert
from vidprism_ds.model.fusion import BidirectionalFusion
from vidprism_ds.model.head_output import ExpertReadoutHead, HeadOutput
from vidprism_ds.model.routing import RateGroupRouter
from vidprism_ds.model.sampler import ContentAwareSampler, StridedPoolSampler


def max_stream_length(num_frames: int, rate: int) -> int:
    return -(-num_frames // rate)


class VidPrismHead(ExpertReadoutHead):
    def __init__(self, dim: int, num_classes: int, cfg: HeadConfig, max_frames: int = 64):
        super().__init__(cfg, max_frames, dim)
        rates = list(cfg.sampling_rates)
        self.rates = rates
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
                max_positions=max_stream_length(max_frames, r) if cfg.expert_pos_embed else 0)
            for g, r in enumerate(rates) for j in range(cfg.experts_per_rate)
        })
        # One expert per rate is the paper's model: no router at all.
        self.routers = (nn.ModuleList([RateGroupRouter(dim, cfg.experts_per_rate, cfg.router_topk,
                                                       cfg.router_capacity_factor) for _ in rates])
                        if cfg.experts_per_rate > 1 else None)
        self._build_readout_and_outputs(dim, num_classes, cfg.readout_heads)

    @property
    def num_experts(self) -> int:
        return len(self.rates) * self.experts_per_rate

    def expert_stream_lengths(self, num_frames: int) -> list[int]:
        """Tokens per clip that each global expert reads (for load-balanced expert placement)."""
        return [max_stream_length(num_frames, r) for r in self.rates for _ in range(self.experts_per_rate)]

    def forward(self, x_btd: torch.Tensor, frame_times: Optional[torch.Tensor] = None,
                importance_prior_bt: Optional[torch.Tensor] = None) -> HeadOutput:
        """``frame_times``: (B, T) seconds of each frame, or None (segment clips, the paper's path)."""
        compute_rank = self.training
        x_btd = self._with_frame_times(x_btd, frame_times)
        sampled = [s(x_btd, compute_rank_loss=compute_rank, importance_prior_bt=importance_prior_bt)
                   for s in self.samplers]
        streams = [s.stream_bld for s in sampled]
        rank_loss = torch.stack([s.rank_loss for s in sampled]).mean()
        if self.fusion is not None:
            streams = self.fusion(streams)
        expert_outputs, router_aux, router_z = self._run_experts(streams)
        return self._read_out(expert_outputs, x_btd, rank_loss=rank_loss, router_aux_loss=router_aux,
                              router_z_loss=router_z, keep_indices=[s.keep_index_bl for s in sampled])

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
