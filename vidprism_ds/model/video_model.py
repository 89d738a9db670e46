"""Backbone + temporal head = the video classifier, and the one place that builds it from config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from vidprism_ds.config.schema import ModelConfig
from vidprism_ds.model.backbone import FrameEncoder, build_frame_encoder
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.model.head_output import HeadOutput, build_classifier_and_projection
from vidprism_ds.model.homogeneous_head import HomogeneousHead


class MeanPoolHead(nn.Module):
    """Baseline: average the frame embeddings over time, then a linear classifier (a frame-bag model)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.classifier, self.projection = build_classifier_and_projection(dim, num_classes)

    def forward(self, x_btd: torch.Tensor, frame_times: Optional[torch.Tensor] = None,
                importance_prior_bt: Optional[torch.Tensor] = None) -> HeadOutput:
        # A frame bag by design: the mean over time cannot use when a frame was taken, so frame_times
        # (and the sampler's importance prior) are accepted and ignored.
        fused_bd = self.ln(x_btd.mean(dim=1))
        zero = x_btd.new_zeros(())
        return HeadOutput(
            logits=self.classifier(fused_bd), expert_weights=x_btd.new_ones(x_btd.shape[0], 1), fused=fused_bd,
            projection=self.projection(fused_bd), expert_means=fused_bd[:, None], rank_loss=zero,
            diversity_loss=zero, balance_loss=zero, router_aux_loss=zero, router_z_loss=zero)


class VideoClassifier(nn.Module):
    """clips (B, T, 3, H, W) -> frame embeddings (B, T, D) -> ``HeadOutput``.

    ``frame_times`` (B, T): seconds from the video's start of each frame, given by dense and multirate
    clips (docs/model.md#frame-timestamps-multirate-clips); None for segment clips.
    """

    def __init__(self, backbone: FrameEncoder, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, clips_btchw: torch.Tensor, frame_times: Optional[torch.Tensor] = None,
                importance_prior_bt: Optional[torch.Tensor] = None) -> HeadOutput:
        return self.head(self.backbone(clips_btchw), frame_times=frame_times, importance_prior_bt=importance_prior_bt)


@dataclass
class BuiltModel:
    model: VideoClassifier
    clip: nn.Module  # the full CLIP (shares the visual tower); its text tower makes class embeddings


def has_experts(cfg: ModelConfig) -> bool:
    """Whether ``build_head`` gives a head with experts (what expert parallelism and DeepSpeed's MoE rules
    apply to): every variant but the mean-pooling baseline."""
    return cfg.variant != "meanpool"


def build_head(cfg: ModelConfig, dim: int, num_classes: int, max_frames: int, burst_frames: int = 0) -> nn.Module:
    if not has_experts(cfg):
        return MeanPoolHead(dim, num_classes)
    if cfg.variant == "homogeneous":
        return HomogeneousHead(dim, num_classes, cfg.head, max_frames=max_frames, burst_frames=burst_frames)
    return VidPrismHead(dim, num_classes, cfg.head, max_frames=max_frames, burst_frames=burst_frames)


def build_video_model(cfg: ModelConfig, num_classes: int, num_frames: int, seed: int = 0,
                      burst_frames: int = 0) -> BuiltModel:
    """Build the classifier on one process. Parallelism is applied afterwards, never here.

    ``burst_frames``: every clip ends in that many burst frames (a multirate clip), 0 for segment and dense
    clips. ``vidprism_ds.model.build`` reads both clip sizes off an experiment's data config."""
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1 (model.num_classes or the dataset's label list)")
    backbone, clip_model = build_frame_encoder(cfg.backbone, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # the head's init does not depend on the backbone's size
        head = build_head(cfg, backbone.embed_dim, num_classes, max_frames=num_frames, burst_frames=burst_frames)
    return BuiltModel(VideoClassifier(backbone, head), clip_model)
