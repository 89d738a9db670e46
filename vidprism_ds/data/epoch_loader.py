"""``EpochLoader`` and how many batches an epoch has, shared by the shard loaders (``loaders``) and the
raw-video loaders (``raw``).

Every rank must run the same number of steps per epoch (a rank that stops early leaves the others
waiting in a collective), so the epoch length is a plan computed from the dataset size alone, before
any worker starts: ``train_batches_per_rank`` for training, ``eval_plan`` (with padding) for evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset


class EpochLoader:
    """Batches of one epoch per iteration; a fresh ``DataLoader`` over a freshly seeded pipeline.

    Frames leave it as uint8 (``vidprism_ds.data.transforms.frames_to_device`` normalises them on the
    model's device). ``pin_memory`` (set by the trainer on GPU runs) makes the loader's thread copy each
    batch into page-locked memory, so the host-to-device copy is asynchronous and overlaps compute.
    """

    def __init__(self, make_pipeline: Callable[..., IterableDataset], batches_per_epoch: int, num_workers: int,
                 num_samples: int, starts_anywhere: bool = False):
        self._make_pipeline = make_pipeline
        self.batches_per_epoch = batches_per_epoch
        self.num_workers = num_workers
        self.num_samples = num_samples  # samples (videos) in the whole dataset, over all ranks
        self.epoch = 0
        self.start_batch = 0
        # whether ``make_pipeline(epoch, start_batch)`` can begin an epoch at any of its batches (the
        # global training order reads samples where they lie; the other loaders only stream)
        self.starts_anywhere = starts_anywhere
        self.pin_memory = False

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration is epoch ``epoch`` from this rank's batch ``start_batch`` on (a resume): the
        batches before it are neither read nor decoded."""
        if start_batch and not self.starts_anywhere:
            raise ValueError("this loader cannot start an epoch part-way (only the shard training loader can)")
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start batch {start_batch} is outside the epoch's {self.batches_per_epoch} batches")
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches of a whole epoch (an iteration from ``start_batch`` gives the ones from there on)."""
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        pipeline = (self._make_pipeline(self.epoch, self.start_batch) if self.starts_anywhere
                    else self._make_pipeline(self.epoch))
        loader = DataLoader(pipeline, batch_size=None, num_workers=self.num_workers,
                            persistent_workers=False, prefetch_factor=2 if self.num_workers > 0 else None,
                            pin_memory=self.pin_memory)
        yield from loader


def check_rank(rank: int, world_size: int, batch_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")


def train_batches_per_rank(num_samples: int, micro_batch: int, world_size: int) -> int:
    """The raw-video loader's epoch length: one pass over the data, rounded down to whole batches of all
    ranks (the shard loader's is ``global_order.RankSlices.batches_per_epoch``)."""
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
