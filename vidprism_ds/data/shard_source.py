"""Source stages: the evaluation's contiguous slot ranges of the global sample order, and the endless
per-slot order the raw-video training loader reads its videos in (training from shards reads the global
order instead: ``global_order``, ``train_source``; ``bench/data.py --order`` rebuilds the per-slot shard
order it replaced from ``endless_permutations`` and ``read_shards`` for its comparison)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import webdataset as wds

from vidprism_ds.data.damage import LOST
from vidprism_ds.data.seeding import Slot, current_slot, seeded_rng, slot_range
from vidprism_ds.data.tar_reader import shard_samples


def permutation_rounds(items: Sequence[Any], seed: int, epoch: int) -> Iterator[Any]:
    """Endless stream of ``items``: round r is a permutation of all of them seeded by (seed, epoch, r)."""
    if not items:
        raise ValueError("nothing to sample from: the shard/video list is empty")
    for round_index in itertools.count():
        order = list(items)
        seeded_rng(seed, epoch, round_index, "order").shuffle(order)
        yield from order


def endless_permutations(items: Sequence[Any], seed: int, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
    """This slot's endless share of ``permutation_rounds`` (raw videos): slot s takes
    every count-th item starting at s. Every slot gets items even when there are fewer items than slots,
    and within an epoch the items are spread evenly over the slots.

    webdataset's ``split_by_worker`` takes every workers-th item for this worker, then this rank takes
    every world_size-th of those (position = worker + workers x (rank + world_size x k), i.e. slot
    rank x workers + worker). The rank split is ours: ``wds.split_by_node`` reads the rank from RANK/
    WORLD_SIZE or ``torch.distributed``, while here the rank is an argument (a test builds every rank's
    loader in one process, and the data code never reads ``torch.distributed``). Nor is webdataset's
    resampling source (``wds.ResampledShards``): it draws with replacement, so within an epoch some shards
    would be read twice and others not at all. (``split_by_worker`` takes the worker from the WORKER and
    NUM_WORKERS environment variables when both are set: they must not be, for training.)
    """
    for_this_worker = wds.split_by_worker(permutation_rounds(items, seed, epoch))
    return itertools.islice(for_this_worker, rank, None, world_size)


def read_shards(shards: Iterator[tuple[str, int]]) -> Iterator[dict]:
    """(shard path, the manifest's sample count) -> lazy samples (see ``vidprism_ds.data.tar_reader``)."""
    for path, expected in shards:
        yield from shard_samples(path, expected)


@dataclass(frozen=True)
class ShardRange:
    path: str
    first: int  # first sample (position inside the shard) to keep
    stop: int  # one past the last
    base: int  # global index of the shard's sample 0
    samples: int  # the shard's sample count in the manifest


def eval_shard_ranges(shard_sizes: Sequence[tuple[str, int]], slot: Slot) -> list[ShardRange]:
    """The pieces of the shards that hold slot's contiguous range of the global sample order."""
    total = sum(n for _, n in shard_sizes)
    start, stop = slot_range(total, slot)
    ranges, base = [], 0
    for path, count in shard_sizes:
        first, last = max(start, base), min(stop, base + count)
        if first < last:
            ranges.append(ShardRange(path, first - base, last - base, base, count))
        base += count
    return ranges


def eval_sample_source(shard_sizes: Sequence[tuple[str, int]], rank: int, world_size: int) -> Iterator[dict]:
    """Raw samples of this slot's range, in global order, each with ``__index__`` (global position).

    A damage marker takes the positions it stands for (a shard that ends early: all its missing
    samples), cut to this slot's range, so the range's samples are accounted for exactly once.

    Not webdataset's splitters: they hand out whole shards, so slots would get sample counts that differ
    by up to a shard; here a range may start or end inside a shard, and every sample knows its position."""
    for piece in eval_shard_ranges(shard_sizes, current_slot(rank, world_size)):
        position = 0
        for sample in shard_samples(piece.path, piece.samples):
            width = sample.get(LOST, 1)
            first, stop = max(position, piece.first), min(position + width, piece.stop)
            if first < stop:
                if LOST in sample:
                    sample[LOST] = stop - first
                sample["__index__"] = piece.base + first
                yield sample
            position += width
            if position >= piece.stop:
                break
