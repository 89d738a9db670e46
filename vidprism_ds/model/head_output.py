"""What every temporal head returns, and the end that the heads share.

All heads (``VidPrismHead``, the homogeneous and the mean-pooling baselines) end in the same two layers
on the pooled clip embedding: the classifier and the projection for the text-contrastive loss
(docs/model.md#heads-and-losses), built by ``build_classifier_and_projection``. The two heads with
experts also share everything after their experts, the attention readout and the losses read off the
experts' outputs: ``ExpertReadoutHead``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.frame_times import FrameTimeEncoding
from vidprism_ds.model.local_dispatch import ExpertDispatcher, LocalDispatcher
from vidprism_ds.model.losses import balance_loss, diversity_between_experts, official_diversity
from vidprism_ds.model.readout import AttentionReadout


@dataclass
class HeadOutput:
    logits: torch.Tensor  # (B, classes)
    expert_weights: torch.Tensor  # (B, E) readout attention mass per expert
    fused: torch.Tensor  # (B, D) readout output
    projection: torch.Tensor  # (B, D) for the text-contrastive loss
    expert_means: torch.Tensor  # (B, E, D) mean output token of each expert
    rank_loss: torch.Tensor
    diversity_loss: torch.Tensor
    balance_loss: torch.Tensor
    router_aux_loss: torch.Tensor
    router_z_loss: torch.Tensor
    keep_indices: list[torch.Tensor] = field(default_factory=list)  # per rate, (B, n_windows)


def build_classifier_and_projection(dim: int, num_classes: int) -> tuple[nn.Linear, nn.Sequential]:
    """``Linear(D, classes)`` and ``Linear(D, D) -> ReLU -> Linear(D, D)``.

    A head stores them as ``classifier`` and ``projection``: those names are state-dict keys that
    checkpoints, exports, classifier slicing and the official importer rely on.
    """
    classifier = nn.Linear(dim, num_classes)
    projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
    return classifier, projection


class ExpertReadoutHead(nn.Module):
    """Base of the heads whose experts are called through ``self.dispatcher``: from the experts' outputs
    on, they compute the same thing.

    A subclass builds its own parts first and calls ``_build_readout_and_outputs`` last, so that the
    readout and output layers draw their initial weights after the experts, in the same order in every
    head. The frame-time encoding (``model.head.frame_time_encoding``) is built here: it draws no random
    numbers, so it does not move any other initial weight.
    """

    def __init__(self, cfg: HeadConfig, max_frames: int, dim: int, burst_frames: int = 0):
        super().__init__()
        if not 0 <= burst_frames < max_frames:
            raise ValueError(f"burst_frames={burst_frames}: a clip of {max_frames} frames needs 0 <= burst_frames "
                             f"< {max_frames} (at least one base frame)")
        self.cfg = cfg
        self.official = cfg.mode == "official"  # also selects the diversity formula
        self.max_frames = max_frames
        # > 0: every clip ends in this many consecutive burst frames (a multirate clip), the frames before
        # them are a segment clip over the whole video (docs/model.md#multirate-clips-in-the-head)
        self.burst_frames = burst_frames
        # Not a submodule: expert parallelism replaces it after construction (vidprism_ds.parallel).
        self.dispatcher: ExpertDispatcher = LocalDispatcher()
        self.frame_time_encoding = (
            FrameTimeEncoding(dim, cfg.frame_time_periods, cfg.frame_time_min_period_s,
                              cfg.frame_time_max_period_s)
            if cfg.frame_time_encoding else None)

    def _with_frame_times(self, x_btd: torch.Tensor, frame_times: Optional[torch.Tensor]) -> torch.Tensor:
        """The frame tokens with their times' encoding added; unchanged without times or without the
        encoding (the times are then ignored, and the head is the one it is without them)."""
        if frame_times is None or self.frame_time_encoding is None:
            return x_btd
        return self.frame_time_encoding(x_btd, frame_times, self.burst_frames)

    def _build_readout_and_outputs(self, dim: int, num_classes: int, readout_heads: int) -> None:
        self.readout = AttentionReadout(dim, readout_heads)
        self.classifier, self.projection = build_classifier_and_projection(dim, num_classes)

    def _read_out(self, expert_outputs: list[torch.Tensor], frames_btd: torch.Tensor, *,
                  rank_loss: Optional[torch.Tensor] = None, router_aux_loss: Optional[torch.Tensor] = None,
                  router_z_loss: Optional[torch.Tensor] = None,
                  keep_indices: Optional[list[torch.Tensor]] = None) -> HeadOutput:
        """Experts' outputs (E tensors (B, L_e, D)) -> ``HeadOutput``; a loss a head does not have is 0
        (a zero of the frames' dtype and device)."""
        tokens_bld = torch.cat(expert_outputs, dim=1)
        segment_le, mean_el = self.readout.segments([o.shape[1] for o in expert_outputs], tokens_bld)
        fused_bd, expert_weights_be = self.readout.read_packed(tokens_bld, segment_le)
        expert_means_bed = mean_el @ tokens_bld  # every expert's mean token, one matmul
        diversity = (official_diversity(expert_means_bed) if self.official
                     else diversity_between_experts(expert_means_bed))
        zero = frames_btd.new_zeros(())
        return HeadOutput(
            logits=self.classifier(fused_bd),
            expert_weights=expert_weights_be,
            fused=fused_bd,
            projection=self.projection(fused_bd),
            expert_means=expert_means_bed,
            rank_loss=rank_loss if rank_loss is not None else zero,
            diversity_loss=diversity,
            balance_loss=balance_loss(expert_weights_be),
            router_aux_loss=router_aux_loss if router_aux_loss is not None else zero,
            router_z_loss=router_z_loss if router_z_loss is not None else zero,
            keep_indices=keep_indices if keep_indices is not None else [],
        )
