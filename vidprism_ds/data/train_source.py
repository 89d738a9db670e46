"""Training source stages: this worker's positions of the global order (``global_order``), each read
where it lies in its shard (``ShardReader``, through the shard's member index), made into a clip by the
per-sample stages, and a damaged sample replaced by a deterministic stand-in.

Reading. ``ShardReader.sample(index)`` looks the sample up in its shard's index (``shard_index``: the
file beside the shard, or a scan of its headers when there is none) and returns lazy members
(``IndexedMember``): a member's bytes are read, with one seek, only when a clip picks that frame, as
``tar_reader`` does for streamed shards. Nothing of a sample the epoch does not reach is read, so a
resume that starts at global batch b reads no sample of the batches before it.

Damage. A position whose sample cannot be used (missing from a cut-short shard, a member that does not
read, a bad JSON/cls/label, a frame that does not decode) becomes a damage marker in the per-sample
stages; ``replace_damaged`` then takes the first usable sample after it in its shuffle block (the block
read as a ring: ``EpochOrder.replacement_positions``), made with the damaged position's random draws.
The stand-in depends on the order alone, so every topology trains the same batch; the warning names
both samples and the batch counts the replacement (``damage.DAMAGED``).
"""

from __future__ import annotations

import bisect
import logging
import os
import tarfile
from collections import OrderedDict
from typing import Callable, Iterator, Optional, Sequence

from vidprism_ds.data.damage import DAMAGED, DamageLog, TooManyDamagedSamples, damage_marker, describe, is_damaged
from vidprism_ds.data.global_order import EpochOrder, RankSlices, TrainOrder, worker_micro_batches
from vidprism_ds.data.seeding import worker_id_and_count
from vidprism_ds.data.shard_index import SampleMembers, load_index, scan_shard

logger = logging.getLogger(__name__)

Stage = Callable[[Iterator[dict]], Iterator[dict]]


class IndexedMember:
    """One member of a shard at the place its index gives; ``read()`` returns its bytes (``tarfile.ReadError``
    when the file ends before them, as ``tar_reader.TarMember`` raises for a cut-short member)."""

    __slots__ = ("_reader", "_shard", "_sample", "_extension", "name", "size")

    def __init__(self, reader: "ShardReader", shard: int, sample: int, extension: str, name: str, size: int):
        self._reader, self._shard, self._sample, self._extension = reader, shard, sample, extension
        self.name, self.size = name, size

    def read(self) -> bytes:
        return self._reader.read_member(self._shard, self._sample, self._extension, self.name)


class StaleIndex(Exception):
    """The tar header before a member's data is not the member the index names (the shard was rewritten
    after its index was made)."""


def check_header(header: bytes, name: str, size: int) -> None:
    """The 512-byte tar header just before a member's data must name the member (``KEY.EXTENSION``, the
    folder part aside) and its size."""
    try:
        stored_size = tarfile.nti(header[124:136])
    except tarfile.HeaderError:
        stored_size = -1
    stored_name = header[:100].rstrip(b"\0").decode("utf-8", "replace")
    if os.path.basename(stored_name) != name or stored_size != size:
        raise StaleIndex(name)


class ShardReader:
    """Samples by manifest index, read where they lie. Keeps the indexes and open files of the last few
    shards (a shuffle block's reads stay in its shards); counts what it reads (``bench/data.py``).

    Each member is read together with the tar header in front of it (one seek, 512 bytes more), which
    must name the member and its size: an index that no longer matches its shard (rewritten in place at
    the same size) is noticed, and the shard's headers are read instead, by whichever reader meets it
    first; what a sample holds never depends on which worker reads it."""

    def __init__(self, shards: Sequence[tuple[str, int]], cached_shards: int = 32):
        self.paths = [path for path, _ in shards]
        self.sizes = [size for _, size in shards]
        self.firsts = [0]
        for size in self.sizes:
            self.firsts.append(self.firsts[-1] + size)
        self.cached_shards = cached_shards
        self._members: OrderedDict[int, tuple[list[SampleMembers], Optional[str]]] = OrderedDict()
        self._scanned: set[int] = set()  # shards whose index was found stale: scanned from now on
        self._files: OrderedDict[str, object] = OrderedDict()
        self.bytes_read = self.reads = self.samples_read = 0

    def __getstate__(self) -> dict:
        # a worker started by spawn gets no open files or cached indexes (a forked one gets a fresh reader
        # per epoch: the pipeline, and this reader with it, is made before the workers start)
        state = dict(self.__dict__)
        state["_members"], state["_files"] = OrderedDict(), OrderedDict()
        return state

    def _shard_members(self, shard: int) -> tuple[list[SampleMembers], Optional[str]]:
        if shard in self._members:
            self._members.move_to_end(shard)
            return self._members[shard]
        members = None if shard in self._scanned else load_index(self.paths[shard])
        problem = None
        if members is None:  # no index beside the shard, a stale one: its headers are read once
            members, problem = scan_shard(self.paths[shard])
        self._members[shard] = (members, problem)
        if len(self._members) > self.cached_shards:
            self._members.popitem(last=False)
        return members, problem

    def _file(self, path: str):
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path]
        handle = open(path, "rb")
        self._files[path] = handle
        if len(self._files) > self.cached_shards:
            self._files.popitem(last=False)[1].close()
        return handle

    def _read_checked(self, shard: int, sample: int, extension: str, name: str) -> bytes:
        members, _ = self._shard_members(shard)
        if sample >= len(members) or extension not in members[sample][1]:
            raise StaleIndex(name)
        offset, size = members[sample][1][extension]
        handle = self._file(self.paths[shard])
        handle.seek(offset - tarfile.BLOCKSIZE)
        data = handle.read(size + tarfile.BLOCKSIZE)
        self.reads += 1
        self.bytes_read += len(data)
        if len(data) != size + tarfile.BLOCKSIZE:
            raise tarfile.ReadError(f"member data cut short ({max(0, len(data) - tarfile.BLOCKSIZE)} of {size} bytes)")
        check_header(data[:tarfile.BLOCKSIZE], name, size)
        return data[tarfile.BLOCKSIZE:]

    def read_member(self, shard: int, sample: int, extension: str, name: str) -> bytes:
        try:
            return self._read_checked(shard, sample, extension, name)
        except StaleIndex:
            if shard in self._scanned:
                raise tarfile.ReadError(f"the tar header before {name} names another member") from None
        logger.warning("%s: its member index does not match the shard (rewritten since it was indexed?): "
                       "reading the shard's headers instead; rebuild it with data_prep/index_shards.py --force",
                       self.paths[shard])
        self._scanned.add(shard)
        self._members.pop(shard, None)
        try:
            return self._read_checked(shard, sample, extension, name)
        except StaleIndex:
            raise tarfile.ReadError(f"the tar header before {name} names another member") from None

    def sample(self, index: int) -> dict:
        """{"__key__", "__url__", "__index__", extension: IndexedMember, ...}, or a damage marker when the
        shard does not hold the manifest's sample ``index``."""
        shard = bisect.bisect_right(self.firsts, index) - 1
        within = index - self.firsts[shard]
        path = self.paths[shard]
        members, problem = self._shard_members(shard)
        self.samples_read += 1
        if within >= len(members):
            reason = (f"sample {within} of the manifest's {self.sizes[shard]} is not in the shard "
                      f"({problem or 'it ends early: truncated?'})")
            return damage_marker({"__url__": path, "__index__": index}, reason)
        key, spans = members[within]
        return {"__key__": key, "__url__": path, "__index__": index,
                **{ext: IndexedMember(self, shard, within, ext, f"{key}.{ext}", size)
                   for ext, (_, size) in spans.items()}}


class EpochSamples:
    """The samples of one epoch's order, by position; the order is computed where it is first needed
    (in each loader worker)."""

    def __init__(self, order: TrainOrder, epoch: int, reader: ShardReader):
        self.order, self.epoch, self.reader = order, epoch, reader
        self._epoch_order: Optional[EpochOrder] = None

    @property
    def epoch_order(self) -> EpochOrder:
        if self._epoch_order is None:
            self._epoch_order = self.order.epoch(self.epoch)
        return self._epoch_order

    def read(self, position: int, draws_of: Optional[int] = None) -> dict:
        """The sample at ``position``; ``__position__`` (what its random draws are keyed by) is
        ``draws_of`` when given (a stand-in takes the draws of the position it fills)."""
        sample = self.reader.sample(self.epoch_order.index_at(position))
        sample["__position__"] = position if draws_of is None else draws_of
        return sample


def rank_positions(slices: RankSlices, order: TrainOrder, start_batch: int) -> Iterator[int]:
    """The epoch positions of this worker's micro-batches, from the rank's micro-batch ``start_batch`` on."""
    worker, workers = worker_id_and_count()
    for number in worker_micro_batches(start_batch, slices.batches_per_epoch(order), worker, workers):
        yield from slices.positions(number)


def run_stages(sample: dict, stages: Sequence[Stage]) -> dict:
    """One sample through the per-sample stages; a stage that drops it (not a sample) gives a marker, so
    every position keeps a sample and every batch its size."""
    stream: Iterator[dict] = iter([sample])
    for stage in stages:
        stream = stage(stream)
    output = next(stream, None)
    if output is None:
        return damage_marker(sample, "no frame, json or cls member")
    return output


def clips_at_positions(positions: Iterator[int], source: EpochSamples, stages: Sequence[Stage]) -> Iterator[dict]:
    for position in positions:
        yield run_stages(source.read(position), stages)


def replace_damaged(samples: Iterator[dict], source: EpochSamples, stages: Sequence[Stage],
                    damage: DamageLog) -> Iterator[dict]:
    """Each damage marker -> the first usable sample after it in its shuffle block (module docstring),
    counted (``DAMAGED``) and named in the warning with its stand-in. Samples that fail as stand-ins are
    passed over without a count: they are counted where their own position is replaced."""
    for sample in samples:
        if not is_damaged(sample):
            yield sample
            continue
        position = sample["__position__"]
        for candidate in source.epoch_order.replacement_positions(position):
            stand_in = run_stages(source.read(candidate, draws_of=position), stages)
            if not is_damaged(stand_in):
                break
        else:
            raise TooManyDamagedSamples(f"training: no usable sample in the shuffle block of {describe(sample)}")
        damage.record(sample, action=f"replaced by shard {stand_in.get('__url__')}, key {stand_in.get('__key__')}")
        yield {**stand_in, DAMAGED: 1}
