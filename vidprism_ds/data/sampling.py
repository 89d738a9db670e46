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

Multi-rate shards (docs/data.md#clip-sampling) add ``burst_frame_indices``: K dense bursts of L
consecutive source frames (or frames at ``burst_fps``) at evenly spaced anchors, so motion faster than
the base's rate survives sharding. ``stored_frames`` merges base and bursts (a frame in both is stored
once) and says which stored frames form each. On the loader side ``ClipSource`` reads that back from a
sample's JSON and ``train_frame_picks``/``eval_frame_picks`` compose a clip in one of the three
``data.clip_sampling`` modes: ``segment`` (TSN over the base, exactly the single-base behaviour),
``dense`` (T burst frames with a stride) and ``multirate`` (a segment clip over the base followed by
consecutive frames of one burst: two parts, each in time order).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

# Timestamps of a video whose container gives no usable frame rate: the common rate, so its times are
# still increasing and of the right order of magnitude.
FALLBACK_FPS = 30.0
CLIP_SAMPLING_MODES = ("segment", "dense", "multirate")


@dataclass(frozen=True)
class FrameSettings:
    """The sharder's frame settings: the first two pick the dense base (``base_frame_indices``), which the
    raw-video loaders pick the same way, the last two say how the sharder stores the kept frames."""

    max_frames: int = 64  # at most this many frames per video, spread evenly over it
    target_fps: float = 0.0  # resample to this rate first (0 = keep every frame)
    short_side: int = 256  # resize so the short side is this (never enlarged)
    jpeg_quality: int = 90
    # Dense bursts (``burst_frame_indices``). Two bursts of 16 frames add at most 32 frames to the 64 of
    # the base, fewer where they overlap it: <= 1.5x the single-base bytes, and 16 consecutive frames
    # hold a full period of anything between ~2 Hz and the Nyquist rate of a 30 fps source.
    burst_count: int = 2  # bursts per video (0 = base only)
    burst_length: int = 16  # frames per burst
    burst_fps: float = 0.0  # frame rate inside a burst (0 = the source rate: consecutive frames)


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


# ---------------------------------------------------------------------------------------------- multi-rate shards


def burst_frame_indices(num_frames: int, source_fps: float, count: int, length: int,
                        burst_fps: float = 0.0) -> list[list[int]]:
    """Source frame indices of ``count`` bursts of ``length`` frames, each ascending.

    Burst k is centred on the middle of the k-th of ``count`` equal parts of the video, so the anchors
    depend on the video's length alone. Inside a burst frames are consecutive, or ``source_fps /
    burst_fps`` apart when ``burst_fps`` is below the source rate. A video shorter than a burst gets
    bursts of what fits (then they overlap)."""
    if num_frames <= 0 or count <= 0 or length <= 0:
        return []
    step = source_fps / burst_fps if burst_fps > 0 and source_fps > burst_fps else 1.0
    offsets = [offset for offset in sorted({round(j * step) for j in range(length)}) if offset < num_frames]
    span = offsets[-1] + 1
    bursts = []
    for k in range(count):
        centre = (k + 0.5) * num_frames / count
        start = min(max(0, int(centre - span / 2)), num_frames - span)
        bursts.append([start + offset for offset in offsets])
    return bursts


@dataclass(frozen=True)
class StoredFrames:
    """What the sharder stores for one video: ``indices`` (source index of each stored frame,
    ascending and distinct), and, as positions into them, the ``base`` and each of the ``bursts``."""

    indices: list[int]
    base: list[int]
    bursts: list[list[int]]


def stored_frames(base: Sequence[int], bursts: Sequence[Sequence[int]]) -> StoredFrames:
    """Merge the base's and the bursts' source indices; a frame in several of them is stored once."""
    indices = sorted(set(base).union(*bursts))
    position = {source: stored for stored, source in enumerate(indices)}
    return StoredFrames(indices, [position[s] for s in base], [[position[s] for s in burst] for burst in bursts])


def frame_times(indices: Sequence[int], source_fps: float) -> list[float]:
    """Seconds from the video's start of each source index."""
    fps = source_fps if source_fps > 0 else FALLBACK_FPS
    return [index / fps for index in indices]


# ---------------------------------------------------------------------------------------------- clip composition


class LayoutError(ValueError):
    """A sample's JSON does not describe its stored frames consistently (the loader skips it as damaged)."""


@dataclass(frozen=True)
class ClipSource:
    """The stored frames of one sample as a clip sees them: ``base`` and ``bursts`` are positions into
    the ``num_stored`` stored frames, ``times`` their seconds (None: the shard records none)."""

    num_stored: int
    base: list[int]
    bursts: list[list[int]]
    times: Optional[list[float]] = None

    @classmethod
    def single_base(cls, num_stored: int) -> ClipSource:
        """A shard without bursts (written before multi-rate shards) or a raw video: all frames are base."""
        return cls(num_stored, list(range(num_stored)), [])

    @classmethod
    def from_meta(cls, meta: dict[str, Any], num_stored: int) -> ClipSource:
        """From a sample's JSON; ``LayoutError`` when it names frames that are not stored."""
        if "bursts" not in meta:
            return cls.single_base(num_stored)
        base, bursts, times = meta.get("base_frames"), meta.get("bursts"), meta.get("frame_times")
        if not _positions_ok(base, num_stored) or not isinstance(bursts, list) or \
                not all(_positions_ok(burst, num_stored) for burst in bursts):
            raise LayoutError(f"json base_frames/bursts do not index the {num_stored} stored frames")
        if not isinstance(times, list) or len(times) != num_stored or \
                any(later <= earlier for earlier, later in zip(times, times[1:])):
            raise LayoutError(f"json frame_times is not {num_stored} increasing times")
        return cls(num_stored, list(base), [list(burst) for burst in bursts], [float(t) for t in times])


def _positions_ok(positions: Any, num_stored: int) -> bool:
    return isinstance(positions, list) and len(positions) > 0 and \
        all(isinstance(p, int) and 0 <= p < num_stored for p in positions)


@dataclass(frozen=True)
class ClipSampling:
    """``data.clip_sampling`` and its parameters, resolved: ``burst_frames`` is the count of burst frames
    in a ``multirate`` clip (0 in the config means half of ``num_frames``)."""

    mode: str = "segment"
    num_frames: int = 8
    dense_stride: int = 1
    burst_frames: int = 0

    @property
    def fast_frames(self) -> int:
        return self.burst_frames or self.num_frames // 2

    @property
    def burst_span(self) -> int:
        """Consecutive burst frames one clip needs: what a shard's bursts must hold."""
        if self.mode == "dense":
            return (self.num_frames - 1) * self.dense_stride + 1
        return self.fast_frames if self.mode == "multirate" else 0

    @property
    def burst_part(self) -> int:
        """Frames at the end of every clip that are a burst part, read apart from the rest by the head
        (``build_video_model(burst_frames=...)``): a multirate clip's burst frames, else 0."""
        return self.fast_frames if self.mode == "multirate" else 0


def dense_picks(burst: Sequence[int], count: int, stride: int, rng: Optional[random.Random] = None,
                offset: float = 0.5) -> list[int]:
    """``count`` frames of ``burst``, ``stride`` apart, from a random start (``rng``) or from relative
    position ``offset`` of the possible starts. A burst too short for the stride (a video shorter than
    a burst) takes the largest stride that fits, then repeats its last frame."""
    if count > 1:
        stride = max(1, min(stride, (len(burst) - 1) // (count - 1)))
    starts = max(1, len(burst) - (count - 1) * stride)
    start = rng.randrange(starts) if rng is not None else min(starts - 1, int(offset * starts))
    return [burst[min(len(burst) - 1, start + i * stride)] for i in range(count)]


class NeedsMultirateShards(ValueError):
    """dense/multirate sampling of a shard written without bursts: the run stops (skipping every sample
    would only hide it); the message says how to re-shard."""


def _require_bursts(source: ClipSource, mode: str) -> None:
    if not source.bursts or source.times is None:
        raise NeedsMultirateShards(f"data.clip_sampling={mode} needs multi-rate shards (frame timestamps and dense "
                          "bursts); this sample has none: re-shard with data_prep/shard.py --burst-count 2 "
                          "--burst-length 16 (or more), or use data.clip_sampling=segment")


def multirate_picks(source: ClipSource, sampling: ClipSampling, burst: Sequence[int],
                    rng: Optional[random.Random] = None, burst_offset: float = 0.5, base_offset: float = 0.5) -> list[int]:
    """A clip in two parts (docs/data.md#clip-sampling): the first ``num_frames - fast_frames`` are a segment
    clip over the base (the whole video), the last ``fast_frames`` consecutive frames of ``burst``; each part
    in time order. A stored frame can be in both parts (a base frame inside the burst): the head reads the
    parts separately (docs/model.md#multirate-clips-in-the-head), so neither part gives a frame up."""
    burst_part = dense_picks(burst, sampling.fast_frames, 1, rng, burst_offset)
    base_count = sampling.num_frames - sampling.fast_frames
    base_part = [source.base[i] for i in segment_indices(len(source.base), base_count, rng, base_offset)]
    return base_part + burst_part


def train_frame_picks(source: ClipSource, sampling: ClipSampling, rng: random.Random) -> list[int]:
    """Stored-frame positions of one training clip. ``segment`` draws exactly as the single-base loader
    did (T segment positions); the other modes draw the burst, then its start, then the base positions."""
    if sampling.mode == "segment":
        return [source.base[i] for i in segment_indices(len(source.base), sampling.num_frames, rng)]
    _require_bursts(source, sampling.mode)
    burst = source.bursts[rng.randrange(len(source.bursts))]
    if sampling.mode == "dense":
        return dense_picks(burst, sampling.num_frames, sampling.dense_stride, rng)
    return multirate_picks(source, sampling, burst, rng)


def eval_view_burst(clip: int, clips: int, bursts: int) -> tuple[int, float]:
    """(burst, relative start) of test clip ``clip`` of ``clips``: the clips are spread evenly over all
    bursts in order, and the clips that share a burst over its possible starts."""
    spread = (clip + 0.5) * bursts / clips
    burst = min(bursts - 1, int(spread))
    return burst, spread - burst


def eval_frame_picks(source: ClipSource, sampling: ClipSampling, clips: int) -> list[list[int]]:
    """Stored-frame positions of each of ``clips`` test clips, deterministic: segment clips at
    ``eval_clip_offsets``; dense and multirate clips on the burst and start ``eval_view_burst`` gives
    (multirate base frames at the segment clips' offsets)."""
    offsets = eval_clip_offsets(clips)
    if sampling.mode == "segment":
        return [[source.base[i] for i in segment_indices(len(source.base), sampling.num_frames, None, offset)]
                for offset in offsets]
    _require_bursts(source, sampling.mode)
    picks = []
    for clip, base_offset in enumerate(offsets):
        burst, start = eval_view_burst(clip, clips, len(source.bursts))
        if sampling.mode == "dense":
            picks.append(dense_picks(source.bursts[burst], sampling.num_frames, sampling.dense_stride, None, start))
        else:
            picks.append(multirate_picks(source, sampling, source.bursts[burst], None, start, base_offset))
    return picks
