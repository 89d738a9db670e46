"""Slots and random streams of the pipeline stages.

Randomness is seeded from (seed, epoch, slot[, purpose]) where *slot* = rank x workers + worker: a rank or
worker never shares a stream with another, and a run is reproducible. The rank and world size come in as
arguments; the worker id is read from ``torch.utils.data.get_worker_info`` inside the stage, i.e. in the
worker process that runs it. ``slot_rng`` is that rule; ``clip_rng`` the stream a training clip's frame
picks and augmentation are drawn from, the same in every path that builds training clips (``clips``,
``device_decode``, ``raw``), so the same seed gives the same clips whichever decodes them.
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
    """The stream training clips draw their frame picks and augmentation from (``sampling.train_frame_picks``
    then ``transforms.draw_clip_augmentation``, clip after clip), whether the clips are decoded in the
    worker, on the device or from raw videos."""
    return slot_rng(seed, epoch, rank, world_size, "augment")


def split_count(total: int, parts: int, part: int) -> int:
    """How many of ``total`` items part ``part`` of ``parts`` gets (the first ``total % parts`` get one more)."""
    return total // parts + (1 if part < total % parts else 0)


def slot_range(total: int, slot: Slot) -> tuple[int, int]:
    """Contiguous [start, stop) of ``total`` items for ``slot``; sizes differ by at most one."""
    return total * slot.index // slot.count, total * (slot.index + 1) // slot.count
