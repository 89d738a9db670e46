"""Clip stages: training clips and evaluation views from shard samples (decoded in the worker), and the
evaluation's invalid samples (damaged samples and padding), so every rank runs its planned batches."""

from __future__ import annotations

import random
from typing import Iterator

import torch

from vidprism_ds.data.clip_settings import (EvalClipSettings, TrainClipSettings, clip_times, sample_clip_source,
                                            sampling_of, uses_frame_times)
from vidprism_ds.data.damage import DAMAGED, LOST, DamageLog, is_damaged
from vidprism_ds.data.jpeg import decode_jpegs
from vidprism_ds.data.sample_filters import map_undamaged
from vidprism_ds.data.sampling import ClipSource, eval_frame_picks, train_frame_picks
from vidprism_ds.data.seeding import sample_rng
from vidprism_ds.data.transforms import apply_clip_augmentation, draw_clip_augmentation, eval_views


def train_clip(source: ClipSource, settings: TrainClipSettings, rng: random.Random, load) -> tuple[torch.Tensor, list[int]]:
    """(uint8 (T, 3, S, S), the picked stored frames): ``data.clip_sampling``'s picks
    (``sampling.train_frame_picks``) and one clip-wide augmentation, drawn from ``rng`` in that order.

    ``load(picks) -> uint8 (len(picks), 3, H, W)`` fetches the chosen frames (JPEG or video decode)."""
    picks = train_frame_picks(source, sampling_of(settings), rng)
    frames_t3hw = load(picks)
    height, width = frames_t3hw.shape[-2:]
    augmentation = draw_clip_augmentation(width, height, rng, settings.crop_scale_min, settings.flip,
                                          settings.grayscale_prob)
    return apply_clip_augmentation(frames_t3hw, augmentation, settings.image_size), picks


def eval_clip_views(source: ClipSource, settings: EvalClipSettings, load) -> tuple[torch.Tensor, list[list[int]]]:
    """(uint8 (V, T, 3, S, S), each test clip's picks): V = clips x crops, clip-major (view v = clip *
    crops + crop); the clips' frames are deterministic (``sampling.eval_frame_picks``)."""
    per_clip_picks = eval_frame_picks(source, sampling_of(settings), settings.clips)
    flat_t3hw = load([p for picks in per_clip_picks for p in picks])
    clips = flat_t3hw.split(settings.num_frames)
    return torch.cat([eval_views(clip, settings.image_size, settings.crops) for clip in clips], dim=0), per_clip_picks


def sample_identity(sample: dict) -> dict:
    """What a training clip keeps of its sample: the manifest index (``index`` in the batch), shard and key
    (to name it in a warning)."""
    return {"index": sample["__index__"], "__key__": sample.get("__key__"), "__url__": sample.get("__url__")}


def to_train_clips(samples: Iterator[dict], settings: TrainClipSettings, seed: int, epoch: int) -> Iterator[dict]:
    """Clips decoded in the worker; each draws from its own ``sample_rng`` (keyed by ``__position__``)."""
    def clip(sample: dict) -> dict:
        jpegs, source = sample["frames_jpeg"], sample_clip_source(sample)
        rng = sample_rng(seed, epoch, sample["__position__"])
        frames, picks = train_clip(source, settings, rng, lambda picks: decode_jpegs(jpegs, picks))
        times = {"frame_times": clip_times(source, [picks])[0]} if uses_frame_times(settings) else {}
        return {"frames": frames, "label": sample["label"], **sample_identity(sample), **times}

    yield from map_undamaged(samples, clip)


def to_eval_views(samples: Iterator[dict], settings: EvalClipSettings) -> Iterator[dict]:
    def views(sample: dict) -> dict:
        jpegs, source = sample["frames_jpeg"], sample_clip_source(sample)
        frames, picks = eval_clip_views(source, settings, lambda picks: decode_jpegs(jpegs, picks))
        times = {"frame_times": clip_times(source, picks, settings.crops)} if uses_frame_times(settings) else {}
        return {"frames": frames, "label": sample["label"], "index": sample["__index__"], "valid": True, **times}

    yield from map_undamaged(samples, views)


def padding_sample(settings: EvalClipSettings) -> dict:
    size = settings.image_size
    padding = {"frames": torch.zeros(settings.views, settings.num_frames, 3, size, size, dtype=torch.uint8),
               "label": 0, "index": -1, "valid": False}
    if uses_frame_times(settings):
        padding["frame_times"] = torch.zeros(settings.views, settings.num_frames, dtype=torch.float32)
    return padding


def invalidate_damaged(samples: Iterator[dict], settings: EvalClipSettings, damage: DamageLog) -> Iterator[dict]:
    """Evaluation: each damage marker is logged and becomes invalid samples (``valid`` False, label 0,
    one per sample it stands for, with their global indices), so this worker's count, and with it every
    rank's batch count, stays what the plan says; the metrics leave them out."""
    for sample in samples:
        if not is_damaged(sample):
            yield sample
            continue
        damage.record(sample)
        index = sample["__index__"]
        for offset in range(sample.get(LOST, 1)):
            yield {**padding_sample(settings), "index": index + offset if index >= 0 else -1, DAMAGED: 1}


def pad_to(samples: Iterator[dict], count: int, settings: EvalClipSettings) -> Iterator[dict]:
    """Exactly ``count`` samples: the stream, then invalid padding samples (``valid`` False)."""
    produced = 0
    for sample in samples:
        if produced >= count:
            raise RuntimeError(f"more samples than the manifest promised ({count} for this worker): "
                               "the shards and manifest.json disagree")
        produced += 1
        yield sample
    for _ in range(count - produced):
        yield padding_sample(settings)
