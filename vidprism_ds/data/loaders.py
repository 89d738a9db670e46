"""Loaders: WebDataset pipelines (explicit stage lists) over the shards, plus raw-video loaders.

Each ``build_*`` returns an ``EpochLoader``: iterate it for one epoch of batches, ``len()`` is the
number of batches this rank gets per epoch (the same on every rank), ``set_epoch(e)`` reseeds shard
order, sample shuffling and augmentation for epoch e.

Training (``build_train_loader``): resampled shards -> lazy tar samples (``tar_reader``: headers now,
frame bytes only when picked) -> shuffle buffer -> safe members -> segment sampling + clip-consistent
augmentation -> damaged samples skipped -> this worker's share of a fixed number of batches -> full
batches. Batches per rank per epoch = max(1, manifest samples // (world_size x micro_batch)), so no rank
waits on another at the end of an epoch.

Evaluation (``build_eval_loader``): the manifest's global sample order is cut into world_size x workers
contiguous ranges (one per rank and worker); each reads only the shards its range touches, so every
sample is produced exactly once. Every range is padded with invalid samples (``valid`` False,
``index`` -1) to the same number of full batches, so every rank runs the same number of batches.

Start-up checks (``build_train_loader``/``build_eval_loader``, in the calling process before any worker
starts), each a one-line ``FileNotFoundError``/``ValueError`` naming the file: the shard folder and its
manifest.json (present, JSON, the keys the loaders need), every shard it lists with samples, the class
list (data.labels or the preset's) against the classes the manifest records, and the manifest's class
count against ``num_classes``. While reading, a damaged sample (``vidprism_ds.data.damage``: truncated
tar, corrupt JPEG, unparseable json/cls, label outside ``[0, num_classes)``) is skipped in training and
an invalid sample (``valid`` False, its own index) in evaluation, with a warning naming shard and key;
more than ``data.max_bad_samples`` in one epoch on one worker stops with ``TooManyDamagedSamples``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.config.validation import effective_hflip
from vidprism_ds.data import device_decode, raw, stages
from vidprism_ds.data.damage import DamageLog, skip_damaged
from vidprism_ds.data.manifest import ShardManifest, check_classes, check_shard_files, load_manifest
from vidprism_ds.data.presets import CUSTOM, get_preset, load_class_names
from vidprism_ds.data.video_lists import read_video_list


class EpochLoader:
    """Batches of one epoch per iteration; a fresh ``DataLoader`` over a freshly seeded pipeline.

    Frames leave it as uint8 (``vidprism_ds.data.transforms.frames_to_device`` normalises them on the
    model's device). ``pin_memory`` (set by the trainer on GPU runs) makes the loader's thread copy each
    batch into page-locked memory, so the host-to-device copy is asynchronous and overlaps compute.
    """

    def __init__(self, make_pipeline: Callable[[int], IterableDataset], batches_per_epoch: int, num_workers: int,
                 num_samples: int):
        self._make_pipeline = make_pipeline
        self.batches_per_epoch = batches_per_epoch
        self.num_workers = num_workers
        self.num_samples = num_samples  # samples (videos) in the whole dataset, over all ranks
        self.epoch = 0
        self.pin_memory = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        loader = DataLoader(self._make_pipeline(self.epoch), batch_size=None, num_workers=self.num_workers,
                            persistent_workers=False, prefetch_factor=2 if self.num_workers > 0 else None,
                            pin_memory=self.pin_memory)
        yield from loader


# ---------------------------------------------------------------------------------------------- plans


def train_batches_per_rank(num_samples: int, micro_batch: int, world_size: int) -> int:
    """Epoch length from the manifest: one pass over the data, rounded down to whole global batches."""
    return max(1, num_samples // (micro_batch * world_size))


@dataclass(frozen=True)
class EvalPlan:
    batches_per_worker: int
    samples_per_worker: int  # after padding: batches_per_worker x batch_size
    batches_per_rank: int


def eval_plan(num_samples: int, batch_size: int, world_size: int, num_workers: int) -> EvalPlan:
    workers = max(1, num_workers)
    largest_range = math.ceil(num_samples / (world_size * workers))
    batches = math.ceil(largest_range / batch_size)
    return EvalPlan(batches, batches * batch_size, batches * workers)


def eval_batch_videos(cfg: DataConfig, micro_batch: int) -> int:
    """Videos per evaluation batch: at most ``micro_batch``, and at most ``data.eval_chunk_mib`` MiB of
    uint8 frames (views x frames x 3 x S x S bytes a video), but always at least one video."""
    video_bytes = cfg.test_clips * cfg.test_crops * cfg.num_frames * 3 * cfg.image_size ** 2
    return max(1, min(micro_batch, cfg.eval_chunk_mib * 2 ** 20 // video_bytes))


def _train_settings(cfg: DataConfig) -> stages.TrainClipSettings:
    # a direction-sensitive preset is never flipped, whatever data.hflip says (validation also refuses it)
    return stages.TrainClipSettings(num_frames=cfg.num_frames, image_size=cfg.image_size,
                                    crop_scale_min=cfg.crop_scale_min,
                                    flip=effective_hflip(cfg),
                                    grayscale_prob=cfg.grayscale_prob)


def _eval_settings(cfg: DataConfig) -> stages.EvalClipSettings:
    return stages.EvalClipSettings(num_frames=cfg.num_frames, image_size=cfg.image_size, clips=cfg.test_clips,
                                   crops=cfg.test_crops)


def _check_rank(rank: int, world_size: int, batch_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")


def _shard_dir(given: Optional[str | Path], configured: str, key: str) -> Path:
    shard_dir = given or configured
    if not shard_dir:
        raise ValueError(f"no shard directory: pass one or set {key}")
    return Path(shard_dir)


def _expected_classes(cfg: DataConfig, class_names: Optional[Sequence[str]]) -> Optional[tuple[list[str], str]]:
    """(class list the shards must record, what to call it in an error), or None when there is none to
    check (dataset custom without data.labels: the config validation refuses that before we get here)."""
    if class_names is not None:
        return list(class_names), "the class list given to the loader"
    if cfg.labels:
        return load_class_names(cfg.dataset, cfg.labels), f"data.labels ({cfg.labels})"
    if cfg.dataset == CUSTOM:
        return None
    label_file = get_preset(cfg.dataset).label_file
    where = f"packaged {label_file}" if label_file else "built in"
    return load_class_names(cfg.dataset), f"the data.dataset={cfg.dataset} class list ({where}; data.labels is empty)"


def _label_limit(manifest: ShardManifest, num_classes: Optional[int]) -> Optional[int]:
    """The class count labels are checked against while reading; None = unchecked (the manifest says 0)."""
    if num_classes is None:
        return manifest.num_classes or None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if manifest.num_classes > num_classes:
        raise ValueError(f"{manifest.path}: the shards have {manifest.num_classes} classes, the model "
                         f"{num_classes}; their labels >= {num_classes} cannot be trained or evaluated on")
    return num_classes


def checked_manifest(shard_dir: Path, cfg: DataConfig, num_classes: Optional[int] = None,
                     class_names: Optional[Sequence[str]] = None) -> tuple[ShardManifest, Optional[int]]:
    """The start-up checks (module docstring) in the building process, so a bad folder, manifest, shard
    list or class list fails in one line naming the file before any worker starts. Returns the manifest
    and the class count labels are checked against."""
    manifest = load_manifest(shard_dir)
    check_shard_files(manifest)
    expected = _expected_classes(cfg, class_names)
    if expected is not None:
        check_classes(manifest, *expected)
    return manifest, _label_limit(manifest, num_classes)


def check_shards_at_start(data_cfg: DataConfig, num_classes: Optional[int] = None, train: bool = True,
                          eval_class_names: Optional[Sequence[str]] = None) -> None:
    """The loaders' start-up checks on data.train_shards (when ``train``) and data.val_shards (when set),
    for a trainer to call before it builds anything slow: the evaluation loader is otherwise built, and
    checked, only when the first evaluation starts, possibly hours into the run.

    ``num_classes``: the model's class count. ``eval_class_names``: a zero-shot evaluation's classes (the
    validation shards are then checked against them and their count instead)."""
    if train:
        checked_manifest(_shard_dir(None, data_cfg.train_shards, "data.train_shards"), data_cfg, num_classes)
    if data_cfg.val_shards:
        eval_classes = num_classes if eval_class_names is None else len(eval_class_names)
        checked_manifest(Path(data_cfg.val_shards), data_cfg, eval_classes, eval_class_names)


# ---------------------------------------------------------------------------------------------- shards


def train_pipeline(shards: list[tuple[str, int]], cfg: DataConfig, micro_batch: int, rank: int, world_size: int,
                   seed: int, batches_per_rank: int, num_classes: Optional[int], epoch: int) -> wds.DataPipeline:
    # data.decode_device=cuda: the same picks and augmentation draws, but the JPEG bytes travel and the
    # training process decodes them on the GPU (vidprism_ds.data.device_decode)
    on_device = cfg.decode_device == "cuda"
    to_clips = device_decode.to_train_jpeg_clips if on_device else stages.to_train_clips
    collate = device_decode.collate_jpeg_clips if on_device else stages.collate_train
    return wds.DataPipeline(
        functools.partial(stages.endless_permutations, shards, seed, epoch, rank, world_size),
        stages.read_shards,
        functools.partial(stages.shuffle_buffer, bufsize=cfg.shuffle_buffer, seed=seed, epoch=epoch, rank=rank,
                          world_size=world_size),
        functools.partial(stages.keep_safe_members, num_classes=num_classes),
        functools.partial(to_clips, settings=_train_settings(cfg), seed=seed, epoch=epoch, rank=rank,
                          world_size=world_size),
        # a sample can turn out damaged only once its frames are read (above): the worker's share is
        # counted after it is dropped, so a damaged sample never costs a batch (the source is endless)
        functools.partial(skip_damaged, damage=DamageLog(cfg.max_bad_samples, "training")),
        functools.partial(stages.take_worker_share, batches_per_rank=batches_per_rank, batch_size=micro_batch),
        wds.batched(micro_batch, collation_fn=collate, partial=False),
    )


def build_train_loader(data_cfg: DataConfig, shard_dir: Optional[str | Path], micro_batch: int, rank: int = 0,
                       world_size: int = 1, seed: int = 0, num_classes: Optional[int] = None,
                       class_names: Optional[Sequence[str]] = None) -> EpochLoader:
    """Training batches {"frames": (B, T, 3, S, S) uint8, "labels": (B,) int64} from ``shard_dir``
    (default ``data_cfg.train_shards``); with ``data.decode_device=cuda`` JPEG batches instead
    (``vidprism_ds.data.device_decode``: ``decode_clips`` turns them into the same frames on the GPU).

    ``num_classes``: the model's class count; a sample whose label is outside it is skipped as damaged
    (default: the manifest's ``num_classes``). ``class_names``: the list the manifest's ``classes`` must
    equal (default: data.labels, else the preset's list)."""
    _check_rank(rank, world_size, micro_batch)
    shard_dir = _shard_dir(shard_dir, data_cfg.train_shards, "data.train_shards")
    manifest, label_limit = checked_manifest(shard_dir, data_cfg, num_classes, class_names)
    shards = [(s.path, s.samples) for s in manifest.shards if s.samples > 0]
    if not shards:
        raise ValueError(f"{manifest.path}: lists no samples")
    batches = train_batches_per_rank(manifest.num_samples, micro_batch, world_size)
    make = functools.partial(train_pipeline, shards, data_cfg, micro_batch, rank, world_size, seed, batches,
                             label_limit)
    return EpochLoader(make, batches, data_cfg.num_workers, manifest.num_samples)


def eval_pipeline(shard_sizes: list[tuple[str, int]], cfg: DataConfig, batch_size: int, rank: int, world_size: int,
                  plan: EvalPlan, num_classes: Optional[int], epoch: int) -> wds.DataPipeline:
    del epoch  # evaluation is the same every epoch
    settings = _eval_settings(cfg)
    return wds.DataPipeline(
        functools.partial(stages.eval_sample_source, shard_sizes, rank, world_size),
        functools.partial(stages.keep_safe_members, num_classes=num_classes),
        functools.partial(stages.to_eval_views, settings=settings),
        # a damaged sample stays in the count as an invalid one: every rank keeps its planned batches
        functools.partial(stages.invalidate_damaged, settings=settings,
                          damage=DamageLog(cfg.max_bad_samples, "evaluation")),
        functools.partial(stages.pad_to, count=plan.samples_per_worker, settings=settings),
        wds.batched(batch_size, collation_fn=stages.collate_eval, partial=False),
    )


def build_eval_loader(data_cfg: DataConfig, shard_dir: Optional[str | Path], batch_size: int, rank: int = 0,
                      world_size: int = 1, num_classes: Optional[int] = None,
                      class_names: Optional[Sequence[str]] = None) -> EpochLoader:
    """Evaluation batches {"frames": (B, V, T, 3, S, S) uint8 with V = test_clips x test_crops (clip-major),
    "labels": (B,) int64, "valid": (B,) bool, "index": (B,) int64 (manifest order; -1 = padding)} from
    ``shard_dir`` (default ``data_cfg.val_shards``). Over all ranks and workers every sample comes
    exactly once: with ``valid`` True, or ``valid`` False and its index when it is damaged.

    ``num_classes`` and ``class_names`` as in ``build_train_loader``; a zero-shot evaluation passes its
    own class list (the validation shards hold another dataset than data.dataset/data.labels)."""
    _check_rank(rank, world_size, batch_size)
    shard_dir = _shard_dir(shard_dir, data_cfg.val_shards, "data.val_shards")
    manifest, label_limit = checked_manifest(shard_dir, data_cfg, num_classes, class_names)
    shard_sizes = [(s.path, s.samples) for s in manifest.shards]
    plan = eval_plan(manifest.num_samples, batch_size, world_size, data_cfg.num_workers)
    make = functools.partial(eval_pipeline, shard_sizes, data_cfg, batch_size, rank, world_size, plan, label_limit)
    return EpochLoader(make, plan.batches_per_rank, data_cfg.num_workers, manifest.num_samples)


# ---------------------------------------------------------------------------------------------- raw videos


def _raw_entries(cfg: DataConfig, list_file: Optional[str | Path], video_root: Optional[str | Path]):
    list_file = list_file or cfg.val_list
    if not list_file:
        raise ValueError("no video list: pass one or set data.val_list")
    root = video_root or cfg.video_root or Path(list_file).parent
    class_names = load_class_names(cfg.dataset, cfg.labels) if (cfg.labels or cfg.dataset != "custom") else None
    entries, _ = read_video_list(list_file, root, cfg.list_format, class_names)
    return [e for e in entries if e.problem is None]


def raw_eval_pipeline(entries, cfg: DataConfig, batch_size: int, rank: int, world_size: int, plan: EvalPlan,
                      epoch: int) -> wds.DataPipeline:
    del epoch
    settings = _eval_settings(cfg)
    return wds.DataPipeline(
        functools.partial(raw.eval_entry_source, entries, rank, world_size),
        functools.partial(raw.raw_to_eval_views, settings=settings),
        functools.partial(stages.pad_to, count=plan.samples_per_worker, settings=settings),
        wds.batched(batch_size, collation_fn=stages.collate_eval, partial=False),
    )


def build_raw_eval_loader(data_cfg: DataConfig, list_file: Optional[str | Path], batch_size: int, rank: int = 0,
                          world_size: int = 1, video_root: Optional[str | Path] = None) -> EpochLoader:
    """Like ``build_eval_loader`` but decoding the listed videos with decord on the fly (no shards).

    ``list_file`` defaults to ``data_cfg.val_list``; paths are relative to ``video_root`` (default
    ``data_cfg.video_root``, else the list's folder). Rows that cannot be used (unknown class) are left
    out; a video that fails to decode is an invalid sample (``valid`` False) with its index."""
    _check_rank(rank, world_size, batch_size)
    entries = _raw_entries(data_cfg, list_file, video_root)
    plan = eval_plan(len(entries), batch_size, world_size, data_cfg.num_workers)
    make = functools.partial(raw_eval_pipeline, entries, data_cfg, batch_size, rank, world_size, plan)
    return EpochLoader(make, plan.batches_per_rank, data_cfg.num_workers, len(entries))


def raw_train_pipeline(entries, cfg: DataConfig, micro_batch: int, rank: int, world_size: int, seed: int,
                       batches_per_rank: int, epoch: int) -> wds.DataPipeline:
    return wds.DataPipeline(
        functools.partial(stages.endless_permutations, [{"entry": e} for e in entries], seed, epoch, rank, world_size),
        functools.partial(raw.raw_to_train_clips, settings=_train_settings(cfg), seed=seed, epoch=epoch, rank=rank,
                          world_size=world_size),
        functools.partial(stages.take_worker_share, batches_per_rank=batches_per_rank, batch_size=micro_batch),
        wds.batched(micro_batch, collation_fn=stages.collate_train, partial=False),
    )


def build_raw_train_loader(data_cfg: DataConfig, list_file: Optional[str | Path], micro_batch: int, rank: int = 0,
                           world_size: int = 1, seed: int = 0, video_root: Optional[str | Path] = None) -> EpochLoader:
    """Training batches decoded from the listed videos on the fly (the benchmark's baseline; the shard
    loader is the one to train with). Same batch format and epoch length rule as ``build_train_loader``."""
    _check_rank(rank, world_size, micro_batch)
    entries = _raw_entries(data_cfg, list_file, video_root)
    if not entries:
        raise ValueError("the video list has no usable rows")
    batches = train_batches_per_rank(len(entries), micro_batch, world_size)
    make = functools.partial(raw_train_pipeline, entries, data_cfg, micro_batch, rank, world_size, seed, batches)
    return EpochLoader(make, batches, data_cfg.num_workers, len(entries))
