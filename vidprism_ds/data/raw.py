"""Stages that read raw video files with decord (no shards): quick evaluation, and the benchmark's
on-the-fly baseline. They produce the same samples as the shard stages, so the rest of the pipeline
(augmentation, padding, batching) is shared.

Frames are chosen the way the sharder would keep them (``FrameSettings`` defaults: at most 64 frames
spread over the video) and then segment-sampled, so a raw clip and a shard clip of the same video
see the same frames (up to JPEG loss).
"""

from __future__ import annotations

import random
import warnings
from typing import Iterator, Sequence

import torch

from vidprism_ds.data.prep.encode import FrameSettings
from vidprism_ds.data.sampling import base_frame_indices
from vidprism_ds.data.stages import (EvalClipSettings, TrainClipSettings, current_slot, eval_clip_views,
                                     padding_sample, seeded_rng, slot_range, train_clip)
from vidprism_ds.data.video_decode import OpenedVideo, VideoDecodeError, open_video, read_frames
from vidprism_ds.data.video_lists import VideoEntry


def eval_entry_source(entries: Sequence[VideoEntry], rank: int, world_size: int) -> Iterator[dict]:
    """This slot's contiguous range of the list, each row with its global position."""
    start, stop = slot_range(len(entries), current_slot(rank, world_size))
    for index in range(start, stop):
        yield {"entry": entries[index], "__index__": index}


def _frame_loader(video: OpenedVideo, base: list[int]):
    """``load(picks)`` for the clip builders: decode the picked base frames in one sorted batch,
    as uint8 (len(picks), 3, H, W) (a channels-last view of decord's (N, H, W, 3), no copy)."""
    def load(picks: Sequence[int]) -> torch.Tensor:
        distinct = sorted(set(picks))
        frames_t3hw = torch.from_numpy(read_frames(video, [base[p] for p in distinct])).permute(0, 3, 1, 2)
        position = {p: i for i, p in enumerate(distinct)}
        return frames_t3hw[[position[p] for p in picks]]

    return load


def _open_with_base(entry: VideoEntry, frames: FrameSettings) -> tuple[OpenedVideo, list[int]]:
    video = open_video(entry.path)
    return video, base_frame_indices(video.num_frames, video.fps, frames.max_frames, frames.target_fps)


def raw_to_train_clips(items: Iterator[dict], settings: TrainClipSettings, seed: int, epoch: int, rank: int,
                       world_size: int, frames: FrameSettings = FrameSettings()) -> Iterator[dict]:
    """Training clips straight from video files; a video that fails is skipped with a warning."""
    rng: random.Random = seeded_rng(seed, epoch, current_slot(rank, world_size).index, "augment")
    for item in items:
        entry: VideoEntry = item["entry"]
        try:
            video, base = _open_with_base(entry, frames)
            clip = train_clip(len(base), settings, rng, _frame_loader(video, base))
        except VideoDecodeError as err:
            warnings.warn(f"skipping {entry.path}: {err}")
            continue
        yield {"frames": clip, "label": entry.label}


def raw_to_eval_views(items: Iterator[dict], settings: EvalClipSettings,
                      frames: FrameSettings = FrameSettings()) -> Iterator[dict]:
    """Evaluation views straight from video files; a video that fails becomes an invalid sample
    (``valid`` False) so every rank still runs the same number of batches."""
    for item in items:
        entry: VideoEntry = item["entry"]
        try:
            video, base = _open_with_base(entry, frames)
            views = eval_clip_views(len(base), settings, _frame_loader(video, base))
        except VideoDecodeError as err:
            warnings.warn(f"evaluation: {entry.path} counted as invalid: {err}")
            yield {**padding_sample(settings), "index": item["__index__"]}
            continue
        yield {"frames": views, "label": entry.label, "index": item["__index__"], "valid": True}
