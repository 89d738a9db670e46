"""Baseline: a homogeneous temporal mixture of experts (MoTE-style), ``model.variant: homogeneous``.

The counterpart that isolates what VidPrism's rate specialisation adds: the same number of experts E
(one per configured sampling rate), the same expert architecture (``TemporalExpert``) and the same
attention readout and heads, but every expert reads the same full-rate stream, the frame embeddings
themselves (B, T, D). There is no sampler and no rank loss, and by default no fusion, so any difference
between the experts comes only from their initialisation and the diversity loss.

``model.head.homogeneous_fusion: true`` adds VidPrism's bidirectional fusion between the experts'
streams (the "homogeneous + fusion" ablation): expert e counts as slow or fast by ``sampling_rates[e]``
exactly as in VidPrism, so the same gated pairs and parameter shapes exist, but all streams keep the full
rate (``BidirectionalFusion(same_length_streams=True)``). Against VidPrism it isolates what heterogeneous
rates add; against the plain homogeneous head, what a gated temporal convolution between streams adds.

Options of ``HeadConfig`` that apply: ``expert_heads``, ``expert_ffn_mult``, ``readout_heads``,
``expert_pos_embed`` (positions 0..T-1), ``mode`` (which diversity formula the loss uses, and the fusion's
update rule), the frame-time encoding, and with ``homogeneous_fusion`` also ``slow_rate_min`` and
``fusion_gate_threshold``. The sampler options and ``use_fusion`` have nothing to act on and are
ignored; ``experts_per_rate`` must be 1 (the routed variant exists for VidPrism only).

The experts live in an ``nn.ModuleDict`` keyed by expert id and are called through ``self.dispatcher``
exactly as in ``VidPrismHead``, so ``vidprism_ds.parallel`` places them the same way.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.config.validation import check_experts_per_rate, check_homogeneous_fusion
from vidprism_ds.model.experts import TemporalExpert
from vidprism_ds.model.fusion import BidirectionalFusion
from vidprism_ds.model.head_output import ExpertReadoutHead, HeadOutput


class HomogeneousHead(ExpertReadoutHead):
    def __init__(self, dim: int, num_classes: int, cfg: HeadConfig, max_frames: int = 64, burst_frames: int = 0):
        # burst_frames: every expert reads all T frames anyway; it only keeps the frame-time encoding's
        # neighbour gaps inside each part of a multirate clip
        super().__init__(cfg, max_frames, dim, burst_frames)
        check_experts_per_rate("homogeneous", cfg.experts_per_rate)
        num_experts = len(cfg.sampling_rates)
        # Kept as a number: after expert parallelism ``self.experts`` holds only this rank's experts.
        self._num_experts = num_experts
        self.experts = nn.ModuleDict({
            str(e): TemporalExpert(dim, cfg.expert_heads, cfg.expert_ffn_mult,
                                   max_positions=max_frames if cfg.expert_pos_embed else 0)
            for e in range(num_experts)
        })
        self._build_readout_and_outputs(dim, num_classes, cfg.readout_heads)
        # Built last, so that every other initial weight equals the plain homogeneous head's of the same
        # seed: the ablation's two arms differ by the fusion alone.
        self.fusion = None
        if cfg.homogeneous_fusion:
            check_homogeneous_fusion("homogeneous", True, cfg.sampling_rates, cfg.slow_rate_min)
            self.fusion = BidirectionalFusion(dim, cfg.sampling_rates, cfg.slow_rate_min, cfg.fusion_gate_threshold,
                                              official=self.official, same_length_streams=True)

    @property
    def num_experts(self) -> int:
        return self._num_experts

    def expert_stream_lengths(self, num_frames: int) -> list[int]:
        """Every expert reads all T frames (used to balance expert placement)."""
        return [num_frames] * self.num_experts

    def forward(self, x_btd: torch.Tensor, frame_times: Optional[torch.Tensor] = None,
                importance_prior_bt: Optional[torch.Tensor] = None) -> HeadOutput:
        """``frame_times``: (B, T) seconds of each frame, or None. importance_prior_bt only shapes the
        sampler's rank loss: there is no sampler here (the rank loss is 0) and no router (the router
        losses are 0)."""
        x_btd = self._with_frame_times(x_btd, frame_times)
        streams = [x_btd] * self.num_experts
        if self.fusion is not None:
            streams = self.fusion(streams)
        expert_outputs = self.dispatcher(streams, self.experts)
        return self._read_out(expert_outputs, x_btd)
