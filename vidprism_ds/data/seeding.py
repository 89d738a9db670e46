"""Slots and random streams of the pipeline stages.

Training clips from shards draw from ``sample_rng``: a stream of their own, seeded by (seed, epoch, the
sample's position in the epoch's global order, ``global_order``), so a sample gives the same frame picks,
crop, flip and grayscale draws whichever rank and worker read it, and on either decode path (``clips``,
``device_decode``).

The raw-video training loader keeps per-slot streams: randomness seeded from (seed, epoch, slot[,
purpose]) where *slot* = rank x workers + worker (``slot_rng``, ``clip_rng``). The rank and world size
come in as arguments; the worker id is read from ``torch.utils.data.get_worker_info`` inside the stage,
i.e. in the worker process that runs it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Slot:
    index: int  # rank * workers_per_rank + worker
    count: int  # world_size * workers_per_rank


def worker_id_and_count() -> tuple[int, int]:
    """(worker id, workers per rank) inside a DataLoader worker; (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def current_slot(rank: int, world_size: int) -> Slot:
    worker, workers = worker_id_and_count()
    return Slot(index=rank * workers + worker, count=world_size * workers)


def seeded_rng(*parts: Any) -> random.Random:
    # repr of a tuple of ints/strings is stable across processes and Python runs (unlike hash())
    return random.Random(repr(parts))


def slot_rng(seed: int, epoch: int, rank: int, world_size: int, purpose: str) -> random.Random:
    """This (rank, worker) slot's random stream for ``purpose`` in epoch ``epoch``: seeded by (seed, epoch,
    slot, purpose), so a resumed epoch draws exactly as the uninterrupted one and no two slots or purposes
    share a stream."""
    return seeded_rng(seed, epoch, current_slot(rank, world_size).index, purpose)


def clip_rng(seed: int, epoch: int, rank: int, world_size: int) -> random.Random:
    """The stream the raw-video loader's training clips draw their frame picks and augmentation from, clip
    after clip (shard clips use ``sample_rng``)."""
    return slot_rng(seed, epoch, rank, world_size, "augment")


def sample_rng(seed: int, epoch: int, position: int) -> random.Random:
    """The stream one training clip from shards draws its frame picks and augmentation from
    (``sampling.train_frame_picks`` then ``transforms.draw_clip_augmentation``): seeded by (seed, epoch,
    its position in the epoch's global order), whatever rank, worker or decode device makes the clip."""
    return seeded_rng(seed, epoch, position, "clip")


def split_count(total: int, parts: int, part: int) -> int:
    """How many of ``total`` items part ``part`` of ``parts`` gets (the first ``total % parts`` get one more)."""
    return total // parts + (1 if part < total % parts else 0)


def slot_range(total: int, slot: Slot) -> tuple[int, int]:
    """Contiguous [start, stop) of ``total`` items for ``slot``; sizes differ by at most one."""
    return total * slot.index // slot.count, total * (slot.index + 1) // slot.count
