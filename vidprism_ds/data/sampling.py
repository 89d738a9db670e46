"""Which frames are kept in a shard, and which of those make up a clip (pure index maths).

Two levels:

1. ``base_frame_indices``: the sharder keeps a *dense base* of each video: every frame, or frames
   resampled to ``target_fps`` when that is set, then at most ``max_frames`` of them spread evenly over
   the whole video. With the default 64 frames a 32-frame clip still has two candidates per segment to
   jitter between, and a 10 s Kinetics clip keeps ~6 fps.
2. ``segment_indices``: TSN-style segment sampling over the kept frames. The frames are split into T
   equal segments; training takes a uniformly random position inside each segment (an independent
   offset per segment), evaluation takes a fixed relative position. Multi-clip testing uses positions
   (c + 0.5) / C for clips c = 0..C-1, so C = 1 is the segment centre and the clips tile each segment.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class FrameSettings:
    """The sharder's frame settings: the first two pick the dense base (``base_frame_indices``), which the
    raw-video loaders pick the same way, the last two say how the sharder stores the kept frames."""

    max_frames: int = 64  # at most this many frames per video, spread evenly over it
    target_fps: float = 0.0  # resample to this rate first (0 = keep every frame)
    short_side: int = 256  # resize so the short side is this (never enlarged)
    jpeg_quality: int = 90


def base_frame_indices(num_frames: int, source_fps: float, max_frames: int, target_fps: float = 0.0) -> list[int]:
    """Source frame indices to keep, ascending and distinct."""
    if num_frames <= 0:
        return []
    if target_fps > 0 and source_fps > target_fps:
        step = source_fps / target_fps
        indices = sorted({min(num_frames - 1, int(i * step)) for i in range(math.ceil(num_frames / step))})
    else:
        indices = list(range(num_frames))
    if len(indices) > max_frames:
        count = len(indices)
        indices = [indices[int((i + 0.5) * count / max_frames)] for i in range(max_frames)]
    return indices


def eval_clip_offsets(num_clips: int) -> list[float]:
    """Relative position inside each segment for each test clip."""
    return [(c + 0.5) / num_clips for c in range(num_clips)]


def segment_indices(num_available: int, num_segments: int, rng: Optional[random.Random] = None,
                    offset: float = 0.5) -> list[int]:
    """One index into ``range(num_available)`` per segment.

    ``rng`` given: a random position in each segment (training); else position ``offset`` in [0, 1).
    Fewer frames than segments repeat frames rather than fail.
    """
    if num_available <= 0:
        raise ValueError("cannot sample a clip from a video with no frames")
    segment = num_available / num_segments
    picks = []
    for t in range(num_segments):
        position = rng.random() if rng is not None else offset
        picks.append(min(num_available - 1, int((t + position) * segment)))
    return picks
