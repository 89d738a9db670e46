"""What a clip is made of: the clip settings taken from ``data`` (``TrainClipSettings``,
``EvalClipSettings``, ``config_clip_sampling``), a shard sample's clip source, and the picked frames' times."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from vidprism_ds.data.damage import DamagedSample
from vidprism_ds.data.presets import effective_hflip
from vidprism_ds.data.sampling import ClipSampling, ClipSource, LayoutError

if TYPE_CHECKING:
    from vidprism_ds.config.schema import DataConfig


def config_clip_sampling(cfg: DataConfig) -> ClipSampling:
    """data.clip_sampling and its parameters as the index maths takes them."""
    return ClipSampling(mode=cfg.clip_sampling, num_frames=cfg.num_frames, dense_stride=cfg.dense_stride,
                        burst_frames=cfg.multirate_burst_frames)


@dataclass(frozen=True, kw_only=True)
class ClipSettings:
    """What every clip of a loader shares: its length, its frame size and how its frames are picked."""

    num_frames: int
    image_size: int
    sampling: ClipSampling = ClipSampling()  # data.clip_sampling; num_frames above is the clip length


@dataclass(frozen=True, kw_only=True)
class TrainClipSettings(ClipSettings):
    crop_scale_min: float
    flip: bool
    grayscale_prob: float

    @classmethod
    def from_config(cls, cfg: DataConfig) -> TrainClipSettings:
        # a direction-sensitive preset is never flipped, whatever data.hflip says (validation also refuses it)
        return cls(num_frames=cfg.num_frames, image_size=cfg.image_size, crop_scale_min=cfg.crop_scale_min,
                   flip=effective_hflip(cfg.dataset, cfg.hflip), grayscale_prob=cfg.grayscale_prob,
                   sampling=config_clip_sampling(cfg))


@dataclass(frozen=True, kw_only=True)
class EvalClipSettings(ClipSettings):
    clips: int
    crops: int

    @classmethod
    def from_config(cls, cfg: DataConfig) -> EvalClipSettings:
        return cls(num_frames=cfg.num_frames, image_size=cfg.image_size, clips=cfg.test_clips, crops=cfg.test_crops,
                   sampling=config_clip_sampling(cfg))

    @property
    def views(self) -> int:
        return self.clips * self.crops


def sampling_of(settings: ClipSettings) -> ClipSampling:
    """The settings' clip sampling with their clip length (settings built by hand keep the default mode)."""
    return dataclasses.replace(settings.sampling, num_frames=settings.num_frames)


def uses_frame_times(settings: ClipSettings) -> bool:
    """Batches carry ``frame_times`` in dense and multirate mode only: segment batches stay as they were."""
    return settings.sampling.mode != "segment"


def sample_clip_source(sample: dict) -> ClipSource:
    """The clip source of a shard sample (``keep_safe_members`` output); ``DamagedSample`` when its JSON
    describes frames it does not hold."""
    try:
        return ClipSource.from_meta(sample["meta"], len(sample["frames_jpeg"]))
    except LayoutError as err:
        raise DamagedSample(str(err)) from None


def clip_times(source: ClipSource, picks_per_clip: Sequence[Sequence[int]], repeat: int = 1) -> torch.Tensor:
    """float32 (clips x repeat, T) seconds of the picked frames (each clip's row ``repeat`` times in a row)."""
    rows = [[source.times[p] for p in picks] for picks in picks_per_clip for _ in range(repeat)]
    return torch.tensor(rows, dtype=torch.float32)
