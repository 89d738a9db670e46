"""Shard loaders: WebDataset pipelines over the shards (explicit stage lists from ``shard_source``,
``sample_filters``, ``clips`` and ``collate``), and their start-up checks. The raw-video loaders are in
``raw``; ``EpochLoader`` and the epoch plans in ``epoch_loader``.

Each ``build_*`` returns an ``EpochLoader``: iterate it for one epoch of batches, ``len()`` is the
number of batches this rank gets per epoch (the same on every rank), ``set_epoch(e)`` reseeds shard
order, sample shuffling and augmentation for epoch e.

Training (``build_train_loader``): the global order (``global_order``: shards permuted, samples shuffled
within blocks of ``data.shuffle_block_shards`` shards, seeded by (seed, epoch)) cut into global batches of
``train.global_batch`` clips; this rank's micro-batch slices of each, split among its workers ->
each position's sample read where it lies (``train_source``, through the shard's member index) -> safe
members -> ``data.clip_sampling``'s frame picks + clip-consistent augmentation drawn from the sample's
own stream (seed, epoch, position) -> a damaged sample replaced by the next usable one of its block ->
full batches. Micro-batches per rank per epoch = max(1, samples // global batch) x grad_accum, the same
on every rank; the same global batches on every world size and worker count.

Evaluation (``build_eval_loader``): the manifest's global sample order is cut into world_size x workers
contiguous ranges (one per rank and worker); each reads only the shards its range touches, so every
sample is produced exactly once. Every range is padded with invalid samples (``valid`` False,
``index`` -1) to the same number of full batches, so every rank runs the same number of batches.

Start-up checks (``build_train_loader``/``build_eval_loader``, in the calling process before any worker
starts), each a one-line ``FileNotFoundError``/``ValueError`` naming the file: the shard folder and its
manifest.json (present, JSON, the keys the loaders need), every shard it lists with samples, the class
list (data.labels or the preset's) against the classes the manifest records, and the manifest's class
count against ``num_classes``, and the manifest's burst settings against ``data.clip_sampling`` (dense
and multirate need multi-rate shards: the error says how to re-shard). While reading, a damaged sample (``vidprism_ds.data.damage``: truncated
tar, corrupt JPEG, unparseable json/cls, label outside ``[0, num_classes)``) is replaced in training and
an invalid sample (``valid`` False, its own index) in evaluation, with a warning naming shard and key;
more than ``data.max_bad_samples`` in one epoch on one worker stops with ``TooManyDamagedSamples``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import webdataset as wds

from vidprism_ds.data import device_decode
from vidprism_ds.data.clip_settings import EvalClipSettings, TrainClipSettings, config_clip_sampling
from vidprism_ds.data.clips import invalidate_damaged, pad_to, to_eval_views, to_train_clips
from vidprism_ds.data.collate import collate_eval, collate_train, with_cpu_seconds
from vidprism_ds.data.damage import DamageLog
from vidprism_ds.data.epoch_loader import EpochLoader, EvalPlan, check_rank, eval_plan
from vidprism_ds.data.global_order import RankSlices, TrainOrder
from vidprism_ds.data.manifest import (ShardManifest, check_classes, check_clip_sampling, check_shard_files,
                                       load_manifest)
from vidprism_ds.data.presets import CUSTOM, get_preset, load_class_names
from vidprism_ds.data.sample_filters import keep_safe_members
from vidprism_ds.data.shard_index import index_path
from vidprism_ds.data.shard_source import eval_sample_source
from vidprism_ds.data.train_source import EpochSamples, ShardReader, clips_at_positions, rank_positions, replace_damaged

if TYPE_CHECKING:
    from vidprism_ds.config.schema import DataConfig

logger = logging.getLogger(__name__)


def eval_batch_videos(cfg: DataConfig, micro_batch: int) -> int:
    """Videos per evaluation batch: at most ``micro_batch``, and at most ``data.eval_chunk_mib`` MiB of
    uint8 frames (views x frames x 3 x S x S bytes a video), but always at least one video."""
    video_bytes = cfg.test_clips * cfg.test_crops * cfg.num_frames * 3 * cfg.image_size ** 2
    return max(1, min(micro_batch, cfg.eval_chunk_mib * 2 ** 20 // video_bytes))


# ---------------------------------------------------------------------------------------------- start-up checks


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
    check_clip_sampling(manifest, config_clip_sampling(cfg))
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


def train_pipeline(shards: list[tuple[str, int]], cfg: DataConfig, slices: RankSlices, order: TrainOrder,
                   num_classes: Optional[int], epoch: int, start_batch: int = 0) -> wds.DataPipeline:
    # data.decode_device=cuda: the same picks and augmentation draws, but the JPEG bytes travel and the
    # training process decodes them on the GPU (vidprism_ds.data.device_decode)
    on_device = cfg.decode_device == "cuda"
    to_clips = device_decode.to_train_jpeg_clips if on_device else to_train_clips
    collate = device_decode.collate_jpeg_clips if on_device else collate_train
    source = EpochSamples(order, epoch, ShardReader(shards, cached_shards=max(32, 2 * cfg.shuffle_block_shards)))
    # what makes one position's sample a clip (also run on a damaged sample's stand-in)
    sample_stages = [
        functools.partial(keep_safe_members, num_classes=num_classes),
        functools.partial(to_clips, settings=TrainClipSettings.from_config(cfg), seed=order.seed, epoch=epoch),
    ]
    return wds.DataPipeline(
        functools.partial(rank_positions, slices, order, start_batch),
        functools.partial(clips_at_positions, source=source, stages=sample_stages),
        functools.partial(replace_damaged, source=source, stages=sample_stages,
                          damage=DamageLog(cfg.max_bad_samples, "training")),
        wds.batched(slices.micro_batch, collation_fn=collate, partial=False),
        with_cpu_seconds,
    )


def _warn_unindexed(manifest: ShardManifest) -> None:
    missing = [s.path for s in manifest.shards if s.samples > 0 and not index_path(s.path).is_file()]
    if missing:
        logger.warning("%d of %d shards in %s have no member index (the first: %s): every loader worker reads "
                       "their headers once per epoch; write the indexes once with python data_prep/index_shards.py "
                       "%s", len(missing), len(manifest.shards), manifest.shard_dir, missing[0], manifest.shard_dir)


def build_train_loader(data_cfg: DataConfig, shard_dir: Optional[str | Path], micro_batch: int, rank: int = 0,
                       world_size: int = 1, seed: int = 0, num_classes: Optional[int] = None,
                       class_names: Optional[Sequence[str]] = None, global_batch: Optional[int] = None) -> EpochLoader:
    """Training batches {"frames": (B, T, 3, S, S) uint8, "labels": (B,) int64, "index": (B,) int64 (each
    clip's manifest index)} from ``shard_dir`` (default ``data_cfg.train_shards``), plus "frame_times":
    (B, T) float32 seconds from the video's start with ``data.clip_sampling`` dense or multirate; with
    ``data.decode_device=cuda`` JPEG batches instead (``vidprism_ds.data.device_decode``: ``decode_clips``
    turns them into the same frames on the GPU).

    The batches are this data-parallel rank's (``rank`` of ``world_size``) micro-batch slices of the global
    order's global batches of ``global_batch`` clips (default: micro_batch x world_size), in the order the
    rank trains them (``global_order``): the same global batches on every world size.
    ``set_epoch(e, start_batch)`` starts an epoch at any of the rank's batches.

    ``num_classes``: the model's class count; a sample whose label is outside it is damaged and replaced
    (default: the manifest's ``num_classes``). ``class_names``: the list the manifest's ``classes`` must
    equal (default: data.labels, else the preset's list)."""
    check_rank(rank, world_size, micro_batch)
    shard_dir = _shard_dir(shard_dir, data_cfg.train_shards, "data.train_shards")
    manifest, label_limit = checked_manifest(shard_dir, data_cfg, num_classes, class_names)
    shards = [(s.path, s.samples) for s in manifest.shards if s.samples > 0]
    if not shards:
        raise ValueError(f"{manifest.path}: lists no samples")
    _warn_unindexed(manifest)
    order = TrainOrder(tuple(n for _, n in shards), seed, data_cfg.shuffle_block_shards,
                       global_batch or micro_batch * world_size)
    slices = RankSlices(order.global_batch, micro_batch, rank, world_size)
    make = functools.partial(train_pipeline, shards, data_cfg, slices, order, label_limit)
    return EpochLoader(make, slices.batches_per_epoch(order), data_cfg.num_workers, manifest.num_samples,
                       starts_anywhere=True)


def eval_pipeline(shard_sizes: list[tuple[str, int]], cfg: DataConfig, batch_size: int, rank: int, world_size: int,
                  plan: EvalPlan, num_classes: Optional[int], epoch: int) -> wds.DataPipeline:
    del epoch  # evaluation is the same every epoch
    settings = EvalClipSettings.from_config(cfg)
    return wds.DataPipeline(
        functools.partial(eval_sample_source, shard_sizes, rank, world_size),
        functools.partial(keep_safe_members, num_classes=num_classes),
        functools.partial(to_eval_views, settings=settings),
        # a damaged sample stays in the count as an invalid one: every rank keeps its planned batches
        functools.partial(invalidate_damaged, settings=settings,
                          damage=DamageLog(cfg.max_bad_samples, "evaluation")),
        functools.partial(pad_to, count=plan.samples_per_worker, settings=settings),
        wds.batched(batch_size, collation_fn=collate_eval, partial=False),
    )


def build_eval_loader(data_cfg: DataConfig, shard_dir: Optional[str | Path], batch_size: int, rank: int = 0,
                      world_size: int = 1, num_classes: Optional[int] = None,
                      class_names: Optional[Sequence[str]] = None) -> EpochLoader:
    """Evaluation batches {"frames": (B, V, T, 3, S, S) uint8 with V = test_clips x test_crops (clip-major),
    "labels": (B,) int64, "valid": (B,) bool, "index": (B,) int64 (manifest order; -1 = padding)}, plus
    "frame_times": (B, V, T) float32 (as the views) with ``data.clip_sampling`` dense or multirate, from
    ``shard_dir`` (default ``data_cfg.val_shards``). Over all ranks and workers every sample comes
    exactly once: with ``valid`` True, or ``valid`` False and its index when it is damaged.

    ``num_classes`` and ``class_names`` as in ``build_train_loader``; a zero-shot evaluation passes its
    own class list (the validation shards hold another dataset than data.dataset/data.labels)."""
    check_rank(rank, world_size, batch_size)
    shard_dir = _shard_dir(shard_dir, data_cfg.val_shards, "data.val_shards")
    manifest, label_limit = checked_manifest(shard_dir, data_cfg, num_classes, class_names)
    shard_sizes = [(s.path, s.samples) for s in manifest.shards]
    plan = eval_plan(manifest.num_samples, batch_size, world_size, data_cfg.num_workers)
    make = functools.partial(eval_pipeline, shard_sizes, data_cfg, batch_size, rank, world_size, plan, label_limit)
    return EpochLoader(make, plan.batches_per_rank, data_cfg.num_workers, manifest.num_samples)
