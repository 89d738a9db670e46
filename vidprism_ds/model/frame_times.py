"""Frame timestamps into the head (docs/model.md#frame-timestamps-multirate-clips).

A multirate clip's T frames come from a sparse whole-video base and from a dense burst of consecutive
source frames, so neither a frame's index nor the index distance between two frames says how far apart
they are in time. ``FrameTimeEncoding`` gives each frame token that information: per frame, sinusoids
at several periods of

* its time relative to the clip's earliest frame (where it sits in the clip, in seconds),
* its distance to the previous and to the next frame (whether its neighbours are consecutive source
  frames or base frames far apart),

plus its relative position in the clip's time span (0 .. 1), mapped to the token width by a projection
that starts at zero, so a head that gets the encoding computes what it computed without it until the
projection learns.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Guards the relative position of a clip whose frames all carry one time (a still image, T = 1).
_MIN_SPAN_S = 1e-6


def geometric_periods(count: int, min_period_s: float, max_period_s: float) -> list[float]:
    """``count`` periods from ``min_period_s`` to ``max_period_s``, evenly spaced in log scale."""
    if count == 1:
        return [min_period_s]
    ratio = (max_period_s / min_period_s) ** (1.0 / (count - 1))
    return [min_period_s * ratio ** k for k in range(count)]


def neighbour_gaps(frame_times_bt: torch.Tensor, burst_frames: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance (s) of each frame to the previous and to the next frame, each (B, T).

    The first frame has no previous one and the last no next one: they take the gap on their other
    side, so a burst at the clip's edge still reads as consecutive frames. A one-frame clip has gaps 0.
    ``burst_frames`` > 0: the last that many frames are a burst part (a multirate clip), and each part's
    neighbours are taken inside the part.
    """
    if 0 < burst_frames < frame_times_bt.shape[1]:
        base_gaps = neighbour_gaps(frame_times_bt[:, :-burst_frames])
        burst_gaps = neighbour_gaps(frame_times_bt[:, -burst_frames:])
        return torch.cat([base_gaps[0], burst_gaps[0]], dim=1), torch.cat([base_gaps[1], burst_gaps[1]], dim=1)
    if frame_times_bt.shape[1] == 1:
        zeros_bt = torch.zeros_like(frame_times_bt)
        return zeros_bt, zeros_bt
    gaps_bt = (frame_times_bt[:, 1:] - frame_times_bt[:, :-1]).abs()
    previous_bt = torch.cat([gaps_bt[:, :1], gaps_bt], dim=1)
    following_bt = torch.cat([gaps_bt, gaps_bt[:, -1:]], dim=1)
    return previous_bt, following_bt


class FrameTimeEncoding(nn.Module):
    """``x + W f(times) + b`` with ``W``, ``b`` zero at initialisation; ``f`` is fixed (no parameters).

    The parameters are created without drawing random numbers, so turning the encoding on leaves every
    other initial weight of the head unchanged.
    """

    def __init__(self, dim: int, num_periods: int, min_period_s: float, max_period_s: float):
        super().__init__()
        periods = geometric_periods(num_periods, min_period_s, max_period_s)
        # A Python list, not a buffer: a bf16 engine would round a buffer, and with it every frequency.
        self.angular_frequencies = [2.0 * math.pi / p for p in periods]
        # sin and cos of three quantities per period, plus the relative position
        self.num_features = 6 * num_periods + 1
        self.weight = nn.Parameter(torch.zeros(dim, self.num_features))
        self.bias = nn.Parameter(torch.zeros(dim))

    def features(self, frame_times_bt: torch.Tensor, burst_frames: int = 0) -> torch.Tensor:
        """(B, T) seconds -> (B, T, num_features) fp32 (the times are made relative first, so fp32 keeps
        a long video's sub-frame phases); ``burst_frames`` as in ``neighbour_gaps``."""
        times_bt = frame_times_bt.float()
        relative_bt = times_bt - times_bt.min(dim=1, keepdim=True).values
        span_b1 = relative_bt.max(dim=1, keepdim=True).values.clamp_min(_MIN_SPAN_S)
        previous_bt, following_bt = neighbour_gaps(times_bt, burst_frames)
        omega_k = torch.tensor(self.angular_frequencies, dtype=torch.float32, device=times_bt.device)
        # (B, T, 3 K): quantity-major (relative, previous, next), period-minor
        angles_btf = (torch.stack([relative_bt, previous_bt, following_bt], dim=-1)[..., None] * omega_k).flatten(2)
        sinusoids_btf = torch.cat([angles_btf.sin(), angles_btf.cos()], dim=-1)
        return torch.cat([(relative_bt / span_b1)[..., None], sinusoids_btf], dim=-1)

    def forward(self, x_btd: torch.Tensor, frame_times_bt: torch.Tensor, burst_frames: int = 0) -> torch.Tensor:
        if frame_times_bt.shape != x_btd.shape[:2]:
            raise ValueError(f"frame_times has shape {tuple(frame_times_bt.shape)}, the frames "
                             f"{tuple(x_btd.shape[:2])} (B, T): one time per frame")
        features_btf = self.features(frame_times_bt, burst_frames).to(self.weight.dtype)
        return x_btd + F.linear(features_btf, self.weight, self.bias).to(x_btd.dtype)
