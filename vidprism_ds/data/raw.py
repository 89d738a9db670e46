"""Raw video files read with decord (no shards): the stages and the loaders built from them, for a
quick evaluation and as the benchmark's on-the-fly baseline. They produce the same samples as the
shard stages, so the rest of the pipeline (augmentation, padding, batching) is shared.

Frames are chosen the way the sharder would keep them (``FrameSettings`` defaults: at most 64 frames
spread over the video) and then segment-sampled, so a raw clip and a shard clip of the same video
see the same frames (up to JPEG loss). Only ``data.clip_sampling=segment``: dense and multirate clips
need the shards' bursts and timestamps, and the loaders here refuse them at start-up.
"""

from __future__ import annotations

import functools
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import torch
import webdataset as wds

from vidprism_ds.data.clip_settings import EvalClipSettings, TrainClipSettings
from vidprism_ds.data.clips import eval_clip_views, pad_to, padding_sample, train_clip
from vidprism_ds.data.collate import collate_eval, collate_train
from vidprism_ds.data.epoch_loader import EpochLoader, EvalPlan, check_rank, eval_plan, train_batches_per_rank
from vidprism_ds.data.presets import CUSTOM, load_class_names
from vidprism_ds.data.sample_filters import take_worker_share
from vidprism_ds.data.sampling import ClipSource, FrameSettings, base_frame_indices
from vidprism_ds.data.seeding import clip_rng, current_slot, slot_range
from vidprism_ds.data.shard_source import endless_permutations
from vidprism_ds.data.video_decode import OpenedVideo, VideoDecodeError, open_video, read_frames
from vidprism_ds.data.video_lists import VideoEntry, read_video_list

if TYPE_CHECKING:
    from vidprism_ds.config.schema import DataConfig

# ---------------------------------------------------------------------------------------------- stages


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
    rng: random.Random = clip_rng(seed, epoch, rank, world_size)
    for item in items:
        entry: VideoEntry = item["entry"]
        try:
            video, base = _open_with_base(entry, frames)
            clip, _ = train_clip(ClipSource.single_base(len(base)), settings, rng, _frame_loader(video, base))
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
            views, _ = eval_clip_views(ClipSource.single_base(len(base)), settings, _frame_loader(video, base))
        except VideoDecodeError as err:
            warnings.warn(f"evaluation: {entry.path} counted as invalid: {err}")
            yield {**padding_sample(settings), "index": item["__index__"]}
            continue
        yield {"frames": views, "label": entry.label, "index": item["__index__"], "valid": True}


# ---------------------------------------------------------------------------------------------- loaders


def _raw_entries(cfg: DataConfig, list_file: Optional[str | Path], video_root: Optional[str | Path],
                 num_classes: Optional[int] = None) -> list[VideoEntry]:
    """The list's usable rows. A row whose class is unknown or whose label is outside ``num_classes`` (the
    model's, as the shard loaders check it; default: the class list's size) is left out, with one warning
    that counts them and names the first: such a label would reach the loss (or index out of its range)."""
    if cfg.clip_sampling != "segment":
        raise ValueError(f"data.clip_sampling={cfg.clip_sampling} needs multi-rate shards (dense bursts and frame "
                         "timestamps): the raw-video loaders serve segment clips only; shard the list with "
                         "data_prep/shard.py and use build_train_loader/build_eval_loader")
    list_file = list_file or cfg.val_list
    if not list_file:
        raise ValueError("no video list: pass one or set data.val_list")
    root = video_root or cfg.video_root or Path(list_file).parent
    class_names = load_class_names(cfg.dataset, cfg.labels) if (cfg.labels or cfg.dataset != CUSTOM) else None
    entries, _ = read_video_list(list_file, root, cfg.list_format, class_names)
    left_out = [(e, e.problem or f"label {e.label} is outside the {num_classes} classes (0..{num_classes - 1})")
                for e in entries if e.problem is not None or (num_classes is not None and e.label >= num_classes)]
    if left_out:
        first, problem = left_out[0]
        warnings.warn(f"{list_file}: {len(left_out)} of {len(entries)} rows left out; the first, line {first.line} "
                      f"({first.video_id}): {problem}")
    dropped = {id(e) for e, _ in left_out}
    return [e for e in entries if id(e) not in dropped]


def raw_eval_pipeline(entries, cfg: DataConfig, batch_size: int, rank: int, world_size: int, plan: EvalPlan,
                      epoch: int) -> wds.DataPipeline:
    del epoch
    settings = EvalClipSettings.from_config(cfg)
    return wds.DataPipeline(
        functools.partial(eval_entry_source, entries, rank, world_size),
        functools.partial(raw_to_eval_views, settings=settings),
        functools.partial(pad_to, count=plan.samples_per_worker, settings=settings),
        wds.batched(batch_size, collation_fn=collate_eval, partial=False),
    )


def build_raw_eval_loader(data_cfg: DataConfig, list_file: Optional[str | Path], batch_size: int, rank: int = 0,
                          world_size: int = 1, video_root: Optional[str | Path] = None,
                          num_classes: Optional[int] = None) -> EpochLoader:
    """Like ``loaders.build_eval_loader`` but decoding the listed videos with decord on the fly (no shards).

    ``list_file`` defaults to ``data_cfg.val_list``; paths are relative to ``video_root`` (default
    ``data_cfg.video_root``, else the list's folder). Rows that cannot be used (unknown class) are left
    out (``_raw_entries``, with ``num_classes`` the model's); a video that fails to decode is an invalid sample
    (``valid`` False) with its index."""
    check_rank(rank, world_size, batch_size)
    entries = _raw_entries(data_cfg, list_file, video_root, num_classes)
    plan = eval_plan(len(entries), batch_size, world_size, data_cfg.num_workers)
    make = functools.partial(raw_eval_pipeline, entries, data_cfg, batch_size, rank, world_size, plan)
    return EpochLoader(make, plan.batches_per_rank, data_cfg.num_workers, len(entries))


def raw_train_pipeline(entries, cfg: DataConfig, micro_batch: int, rank: int, world_size: int, seed: int,
                       batches_per_rank: int, epoch: int) -> wds.DataPipeline:
    return wds.DataPipeline(
        functools.partial(endless_permutations, [{"entry": e} for e in entries], seed, epoch, rank, world_size),
        functools.partial(raw_to_train_clips, settings=TrainClipSettings.from_config(cfg), seed=seed, epoch=epoch,
                          rank=rank, world_size=world_size),
        functools.partial(take_worker_share, batches_per_rank=batches_per_rank, batch_size=micro_batch),
        wds.batched(micro_batch, collation_fn=collate_train, partial=False),
    )


def build_raw_train_loader(data_cfg: DataConfig, list_file: Optional[str | Path], micro_batch: int, rank: int = 0,
                           world_size: int = 1, seed: int = 0, video_root: Optional[str | Path] = None,
                           num_classes: Optional[int] = None) -> EpochLoader:
    """Training batches decoded from the listed videos on the fly (the benchmark's baseline; the shard
    loader is the one to train with). Same batch format and epoch length rule as ``build_train_loader``."""
    check_rank(rank, world_size, micro_batch)
    entries = _raw_entries(data_cfg, list_file, video_root, num_classes)
    if not entries:
        raise ValueError("the video list has no usable rows")
    batches = train_batches_per_rank(len(entries), micro_batch, world_size)
    make = functools.partial(raw_train_pipeline, entries, data_cfg, micro_batch, rank, world_size, seed, batches)
    return EpochLoader(make, batches, data_cfg.num_workers, len(entries))
