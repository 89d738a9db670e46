"""Run a model over batches and keep, per clip, what shows how its experts divide the work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

from vidprism_ds.data.transforms import frames_to_device


@dataclass
class Specialisation:
    """Per-clip records, N clips (a multi-view sample counts once per view)."""

    labels_n: np.ndarray  # (N,) int
    predictions_n: np.ndarray  # (N,) int, argmax of the logits
    expert_weights_ne: np.ndarray  # (N, E) readout attention mass per expert (rows sum to 1)
    expert_means_ned: np.ndarray  # (N, E, D) mean output token of each expert
    # per sampling rate, (N, n_windows) absolute index of the frame each window kept; empty when the
    # head has no content-aware sampler (mean pooling, homogeneous experts)
    keep_indices: list[np.ndarray] = field(default_factory=list)
    num_frames: int = 0
    # the last that many clip frames are a multirate clip's burst part (docs/model.md#multirate-clips-in-the-head)
    burst_frames: int = 0

    @property
    def num_experts(self) -> int:
        return self.expert_weights_ne.shape[1]


def expert_names(head: nn.Module, num_experts: int) -> list[str]:
    """Axis labels: the rate each readout slot belongs to, or plain numbers for homogeneous experts."""
    rates = getattr(head, "rates", None)
    if rates is not None and len(rates) == num_experts:
        return [f"rate {r}" for r in rates]
    if num_experts == 1:
        return ["mean pool"]
    return [f"expert {e}" for e in range(num_experts)]


def sampler_rates(head: nn.Module) -> list[int] | None:
    """The rates of the head's content-aware samplers, or None when it has none (mean pooling,
    homogeneous experts, or strided pooling, whose "kept" frame is just each window's start)."""
    from vidprism_ds.model.sampler import ContentAwareSampler

    samplers = getattr(head, "samplers", None)
    if samplers is None or not all(isinstance(s, ContentAwareSampler) for s in samplers):
        return None
    return [s.rate for s in samplers]


def _flatten_views(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Training batches (B, T, 3, H, W) pass as they are; evaluation batches (B, V, T, 3, H, W) become
    B*V clips with the padding samples (``valid`` False) dropped. The frames' times (dense and multirate
    clips only, else None) follow the same path."""
    frames, labels, times = batch["frames"], batch["labels"], batch.get("frame_times")
    if frames.dim() == 5:
        return frames, labels, times
    if "valid" in batch:
        valid = batch["valid"]
        frames, labels = frames[valid], labels[valid]
        times = times[valid] if times is not None else None
    views = frames.shape[1]
    times = times.flatten(0, 1) if times is not None else None
    return frames.flatten(0, 1), labels.repeat_interleave(views), times


@torch.no_grad()
def collect(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], max_clips: int = 0,
            device: torch.device | str = "cpu") -> Specialisation:
    """``model``: clips (B, T, 3, H, W) -> ``HeadOutput`` (a ``VideoClassifier``). Eval mode, no grad.

    ``max_clips`` > 0 stops after that many clips."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    parts: dict[str, list] = {"labels": [], "pred": [], "weights": [], "means": [], "keep": []}
    seen, num_frames = 0, 0
    try:
        for batch in batches:
            frames, labels, times = _flatten_views(batch)
            if frames.shape[0] == 0:
                continue
            num_frames = frames.shape[1]
            # dense and multirate clips carry their frames' times (docs/model.md#frame-timestamps-multirate-clips)
            extra = {} if times is None else {"frame_times": times.to(device, torch.float32)}
            out = model(frames_to_device(frames, torch.device(device), dtype), **extra)
            parts["labels"].append(labels.cpu())
            parts["pred"].append(out.logits.argmax(-1).cpu())
            parts["weights"].append(out.expert_weights.float().cpu())
            parts["means"].append(out.expert_means.float().cpu())
            parts["keep"].append([k.cpu() for k in out.keep_indices])
            seen += frames.shape[0]
            if max_clips and seen >= max_clips:
                break
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("no clips to analyse: the data yielded no valid samples")
    limit = max_clips if max_clips else seen
    cat = lambda xs: torch.cat(xs)[:limit].numpy()  # noqa: E731
    keep = [cat([k[r] for k in parts["keep"]]) for r in range(len(parts["keep"][0]))]
    return Specialisation(labels_n=cat(parts["labels"]).astype(np.int64), predictions_n=cat(parts["pred"]).astype(np.int64),
                          expert_weights_ne=cat(parts["weights"]), expert_means_ned=cat(parts["means"]),
                          keep_indices=keep, num_frames=num_frames,
                          burst_frames=getattr(getattr(model, "head", None), "burst_frames", 0))
