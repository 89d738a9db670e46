"""The global training order: which sample every position of an epoch holds, and which positions each
data-parallel rank and loader worker reads. Nothing here depends on the world size except the last step
(which slices a rank takes), so every topology trains on the same global batches.

An epoch's order is a pure function of (seed, epoch, the manifest's shard sizes, ``data.shuffle_block_shards``):

1. the shards are permuted (seeded by (seed, epoch, "shards"));
2. the permuted shards are cut into blocks of ``block_shards`` consecutive shards;
3. the samples of each block are shuffled among themselves (seeded by (seed, epoch, "block", b)).

So a block's reads stay inside its few shards (locality), while samples of different shards mix within
a block (shuffle quality); a larger block mixes more and touches more files at a time.

Global batch b of an epoch is positions ``[b x G, (b + 1) x G)``, G = ``train.global_batch``; an epoch is
``max(1, samples // G)`` global batches (the remainder is not trained on; with fewer samples than G, the
order repeats to fill one batch). A global batch is cut into G / m micro-batch slices of m =
``train.micro_batch`` positions; data-parallel rank r of d with accumulation a = G / (m x d) takes slices
``r x a .. r x a + a - 1``, its k-th micro-batch of the step being slice ``r x a + k``. The rank's workers
take its micro-batches in turn (worker w of W: micro-batches w, w + W, ...), which is the order the
DataLoader hands them out in.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterator

from vidprism_ds.data.seeding import seeded_rng


@dataclass(frozen=True)
class TrainOrder:
    """The epoch orders of one dataset and seed, and the global batch they are cut into."""

    shard_sizes: tuple[int, ...]  # the manifest's sample count per shard, in manifest order
    seed: int
    block_shards: int  # shards per shuffle block (data.shuffle_block_shards)
    global_batch: int  # G

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError("nothing to train on: the manifest lists no samples")
        if self.block_shards < 1 or self.global_batch < 1:
            raise ValueError(f"block_shards ({self.block_shards}) and global_batch ({self.global_batch}) must be >= 1")

    @property
    def num_samples(self) -> int:
        return sum(self.shard_sizes)

    @property
    def global_batches(self) -> int:
        """Global batches an epoch (the same on every topology)."""
        return max(1, self.num_samples // self.global_batch)

    def epoch(self, epoch: int) -> "EpochOrder":
        firsts = [0]
        for size in self.shard_sizes:
            firsts.append(firsts[-1] + size)  # manifest index of each shard's sample 0
        shards = [k for k, size in enumerate(self.shard_sizes) if size > 0]
        seeded_rng(self.seed, epoch, "shards").shuffle(shards)
        order, block_starts = [], []
        for block, first in enumerate(range(0, len(shards), self.block_shards)):
            block_starts.append(len(order))
            members = [i for k in shards[first:first + self.block_shards] for i in range(firsts[k], firsts[k + 1])]
            seeded_rng(self.seed, epoch, "block", block).shuffle(members)
            order.extend(members)
        return EpochOrder(tuple(order), tuple(block_starts))


@dataclass(frozen=True)
class EpochOrder:
    indices: tuple[int, ...]  # manifest index of the sample at each position of [0, samples)
    block_starts: tuple[int, ...]  # first position of each shuffle block

    def index_at(self, position: int) -> int:
        """The manifest index at an epoch position (positions past the samples wrap around)."""
        return self.indices[position % len(self.indices)]

    def block_span(self, position: int) -> tuple[int, int]:
        """[first, stop) positions of the block that holds ``position`` (wrapped into the samples)."""
        wrapped = position % len(self.indices)
        block = bisect.bisect_right(self.block_starts, wrapped) - 1
        stop = self.block_starts[block + 1] if block + 1 < len(self.block_starts) else len(self.indices)
        return self.block_starts[block], stop

    def replacement_positions(self, position: int) -> Iterator[int]:
        """Where a damaged sample's stand-in is looked for: the positions after it in its block, then
        those before it (the block read as a ring), so the choice depends on the order alone."""
        first, stop = self.block_span(position)
        wrapped = position % len(self.indices)
        yield from range(wrapped + 1, stop)
        yield from range(first, wrapped)


@dataclass(frozen=True)
class RankSlices:
    """A data-parallel rank's share of every global batch."""

    global_batch: int
    micro_batch: int
    rank: int  # data-parallel rank
    dp_size: int

    def __post_init__(self):
        if self.micro_batch < 1 or self.global_batch % (self.micro_batch * self.dp_size):
            raise ValueError(f"the global batch {self.global_batch} is not a multiple of micro-batch "
                             f"{self.micro_batch} x {self.dp_size} data-parallel ranks")

    @property
    def grad_accum(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp_size)

    def batches_per_epoch(self, order: TrainOrder) -> int:
        """This rank's micro-batches an epoch (the same on every rank)."""
        return order.global_batches * self.grad_accum

    def positions(self, micro_batch_number: int) -> range:
        """The epoch positions of this rank's ``micro_batch_number``-th micro-batch of the epoch."""
        step, k = divmod(micro_batch_number, self.grad_accum)
        first = step * self.global_batch + (self.rank * self.grad_accum + k) * self.micro_batch
        return range(first, first + self.micro_batch)


def worker_micro_batches(start: int, stop: int, worker: int, workers: int) -> range:
    """The micro-batches [start, stop) of a rank that loader worker ``worker`` of ``workers`` builds: every
    workers-th from ``start + worker``, the round-robin order in which the DataLoader returns them."""
    return range(start + worker, stop, workers)

