"""Video data: sharding, WebDataset loaders, presets and synthetic videos.

Public API (imported lazily, so ``import vidprism_ds.data.presets`` stays light for the config code)::

    build_train_loader(data_cfg, shard_dir, micro_batch, rank=0, world_size=1, seed=0, global_batch=None) -> EpochLoader
        batches {"frames": (B, T, 3, S, S) uint8, "labels": (B,) int64, "index": (B,) int64}: this
        data-parallel rank's slices of the global order's global batches (the same on every world size)
    build_eval_loader(data_cfg, shard_dir, batch_size, rank=0, world_size=1) -> EpochLoader
        batches {"frames": (B, V, T, 3, S, S) uint8, "labels": (B,) int64, "valid": (B,) bool,
                 "index": (B,) int64}; V = test_clips x test_crops, clip-major; padding has valid False
    build_raw_eval_loader(data_cfg, list_file, batch_size, rank=0, world_size=1, video_root=None, num_classes=None)
    build_raw_train_loader(data_cfg, list_file, micro_batch, rank=0, world_size=1, seed=0, video_root=None,
                           num_classes=None)
        the same batches decoded from video files with decord (no shards)

``EpochLoader``: ``len()`` = batches per epoch on this rank (equal on every rank, from the manifest),
``set_epoch(e)`` selects epoch e's order and random draws (the training loader's ``set_epoch(e, start_batch)``
starts it part-way, reading nothing before). ``shard_dir=None`` takes
``data_cfg.train_shards`` / ``data_cfg.val_shards``. T = ``num_frames``, S = ``image_size``; frames are
uint8 RGB: ``vidprism_ds.data.transforms.frames_to_device`` CLIP-normalises a batch on the model's device.
Rank and world size are arguments: nothing here reads ``torch.distributed``.

Modules: ``loaders`` (shard loaders and their start-up checks) and ``raw`` (raw-video loaders) list
pipeline stages in order inside ``webdataset.DataPipeline``; a stage is ``stage(samples: Iterator) ->
Iterator`` (or a source ``() -> Iterator``). webdataset's own stages are used where they give what
training needs (``batched``; ``split_by_worker`` for raw videos); where they cannot, the stage here says
why in its docstring. The stages: ``global_order`` and ``train_source`` (the training order, the same on
every topology, read by index through ``shard_index``; damaged samples replaced), ``shard_source``
(evaluation ranges, the raw-video order), ``sample_filters`` (safe members, a worker's share of the
batches), ``clips`` (training clips, evaluation views, invalid samples), ``collate``, and
``device_decode`` (``data.decode_device=cuda``); what they share: ``seeding`` (random streams: a training
clip's from (seed, epoch, its position in the global order)), ``clip_settings`` (clip settings from
``data``), ``jpeg`` (decoding frame members), ``damage`` (a damaged sample travels as a marker that every
stage passes on, to be replaced, skipped or made invalid at the end).
Also: ``epoch_loader`` (``EpochLoader``, batches per epoch), ``presets`` (label lists, class counts,
direction sensitivity, K710 index maps), ``video_lists`` (list formats), ``synthetic`` and
``heldout_temporal`` (generated videos, written by ``generated_videos``), ``prep``
(``data_prep/shard.py``), ``manifest``. Details: docs/data.md.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "build_train_loader": "vidprism_ds.data.loaders",
    "build_eval_loader": "vidprism_ds.data.loaders",
    "build_raw_eval_loader": "vidprism_ds.data.raw",
    "build_raw_train_loader": "vidprism_ds.data.raw",
    "EpochLoader": "vidprism_ds.data.epoch_loader",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidprism_ds.data' has no attribute {name!r}")
