"""The global training order (issue 30): the same global batches on every data-parallel size and worker
count, per-sample random draws, a resume that starts at any batch without reading what it skips, and
damaged samples replaced the same way on every topology. The multi-process training runs on these
loaders: tests/train/test_topology_free.py."""

import logging

import pytest
import torch

from tests.data.test_damaged_data import _corrupt_frames, write_shards
from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import build_train_loader
from vidprism_ds.data.global_order import RankSlices, TrainOrder, worker_micro_batches
from vidprism_ds.data.train_source import ShardReader

TOPOLOGIES = [(1, 4), (2, 2), (4, 1)]  # (data-parallel ranks, grad_accum) of one global batch of 8 = 2 x a x d


def _cfg(shards, **overrides) -> DataConfig:
    settings = dict(dataset="synthetic", train_shards=str(shards), num_frames=4, image_size=32, num_workers=0,
                    shuffle_block_shards=2, grayscale_prob=0.5)
    settings.update(overrides)
    return DataConfig(**settings)


def global_batches(cfg: DataConfig, dp_size: int, epoch: int = 1, global_batch: int = 8, start_batch: int = 0,
                   damaged: list | None = None):
    """[(manifest indices, frames) of each global batch], assembled from every rank's micro-batches in
    slice order (rank r's k-th micro-batch of a step is slice r x grad_accum + k); ``damaged`` gets the
    damaged samples the batches stand in for, summed over the ranks."""
    damaged = [] if damaged is None else damaged
    per_rank = []
    for rank in range(dp_size):
        loader = build_train_loader(cfg, None, 2, rank, dp_size, seed=3, global_batch=global_batch)
        loader.set_epoch(epoch, start_batch=start_batch)
        batches = list(loader)
        assert len(batches) == len(loader) - start_batch
        per_rank.append(batches)
    accum = global_batch // (2 * dp_size)
    steps = []
    for step in range(len(per_rank[0]) // accum):
        parts = [per_rank[r][step * accum + k] for r in range(dp_size) for k in range(accum)]
        steps.append((torch.cat([p["index"] for p in parts]).tolist(), torch.cat([p["frames"] for p in parts])))
    damaged.append(sum(b["damaged"] for batches in per_rank for b in batches))
    return steps


def test_the_epoch_order_is_a_seeded_permutation_shuffled_within_blocks_of_shards():
    order = TrainOrder(shard_sizes=(4, 0, 3, 5, 4), seed=1, block_shards=2, global_batch=4)
    first = order.epoch(0)
    assert sorted(first.indices) == list(range(16)) and order.global_batches == 4
    assert first == order.epoch(0) and first != order.epoch(1)  # a pure function of (seed, epoch)
    assert first != TrainOrder((4, 0, 3, 5, 4), 2, 2, 4).epoch(0)
    shard_of = [0] * 4 + [2] * 3 + [3] * 5 + [4] * 4
    spans = list(zip(first.block_starts, [*first.block_starts[1:], 16]))
    assert len(spans) == 2  # 4 non-empty shards, 2 a block
    for start, stop in spans:  # a block's samples come from its 2 shards only, mixed
        assert len({shard_of[i] for i in first.indices[start:stop]}) == 2
    # a stand-in is looked for after the damaged position in its block, then before it (a ring)
    start, stop = spans[0]
    assert list(first.replacement_positions(start + 1)) == [*range(start + 2, stop), start]


def test_a_rank_takes_its_slices_of_each_global_batch_and_workers_take_its_micro_batches_in_turn():
    order = TrainOrder((10, 10), seed=0, block_shards=1, global_batch=8)
    one = RankSlices(8, 2, rank=0, dp_size=1)
    assert one.grad_accum == 4 and one.batches_per_epoch(order) == 8
    assert [list(one.positions(n)) for n in (0, 3, 4)] == [[0, 1], [6, 7], [8, 9]]
    second_of_two = RankSlices(8, 2, rank=1, dp_size=2)
    assert [list(second_of_two.positions(n)) for n in range(3)] == [[4, 5], [6, 7], [12, 13]]
    assert list(worker_micro_batches(3, 8, worker=1, workers=2)) == [4, 6]
    with pytest.raises(ValueError, match="not a multiple"):
        RankSlices(8, 3, rank=0, dp_size=1)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_global_batches_are_the_same_on_1_2_and_4_ranks(tiny_shards, workers):
    cfg = _cfg(tiny_shards["train"], num_workers=workers)
    reference = global_batches(cfg, 1)
    assert len(reference) == 2  # 16 videos, global batch 8
    assert sorted(i for indices, _ in reference for i in indices) == list(range(16))  # each sample once
    for dp_size, _ in TOPOLOGIES[1:]:
        batches = global_batches(cfg, dp_size)
        assert [indices for indices, _ in batches] == [indices for indices, _ in reference]
        for (_, frames), (_, expected) in zip(batches, reference):  # the same picks and augmentation draws
            assert torch.equal(frames, expected)
    assert [i for i, _ in global_batches(cfg, 1, epoch=2)] != [i for i, _ in reference]


def test_an_epoch_started_at_a_batch_continues_exactly_and_reads_nothing_before_it(tiny_shards, monkeypatch):
    cfg = _cfg(tiny_shards["train"])
    uninterrupted = global_batches(cfg, 2, global_batch=4)  # 4 global batches of 4
    opened = []
    sample = ShardReader.sample
    monkeypatch.setattr(ShardReader, "sample", lambda self, index: (opened.append(index), sample(self, index))[1])
    for dp_size in (1, 2):
        opened.clear()
        accum = 4 // (2 * dp_size)
        resumed = global_batches(cfg, dp_size, global_batch=4, start_batch=2 * accum)  # from global batch 2
        assert [i for i, _ in resumed] == [i for i, _ in uninterrupted[2:]]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(resumed, uninterrupted[2:]))
        skipped = {i for indices, _ in uninterrupted[:2] for i in indices}
        assert sorted(opened) == sorted(i for indices, _ in uninterrupted[2:] for i in indices)
        assert not skipped & set(opened)


def test_a_damaged_sample_gets_the_same_stand_in_on_every_topology(tmp_path, caplog):
    data = write_shards(tmp_path / "shards", [4, 4, 4, 4], damage=_corrupt_frames({"000000005"}))
    for workers in (0, 2):
        cfg = _cfg(data["dir"], num_workers=workers)
        counted = []
        with caplog.at_level(logging.WARNING):
            reference = global_batches(cfg, 1, damaged=counted)
        indices = [i for batch, _ in reference for i in batch]
        assert 5 not in indices and len(indices) == 16 and len(set(indices)) == 15  # its stand-in is there twice
        for dp_size, _ in TOPOLOGIES[1:]:
            batches = global_batches(cfg, dp_size, damaged=counted)
            assert [i for i, _ in batches] == [i for i, _ in reference]
            assert all(torch.equal(a, b) for (_, a), (_, b) in zip(batches, reference))
        assert counted == [1, 1, 1]  # the epoch's count (the trainer's damaged_samples) on every topology
    stand_in = next(i for i in indices if indices.count(i) == 2)
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert f"replaced by shard {data['dir']}/shard-00000{stand_in // 4}.tar, key {stand_in:09d}" in warnings
    assert "key 000000005: 000000005.000000.jpg: not a JPEG file" in warnings


def test_workers_sharing_an_odd_number_of_micro_batches_keep_the_order(tiny_shards):
    # global batch 6 = 3 micro-batches of 2; from global batch 1 on, 3 micro-batches for 2 workers
    uninterrupted = global_batches(_cfg(tiny_shards["train"]), 1, global_batch=6)
    resumed = global_batches(_cfg(tiny_shards["train"], num_workers=2), 1, global_batch=6, start_batch=3)
    assert len(uninterrupted) == 2 and [i for i, _ in resumed] == [i for i, _ in uninterrupted[1:]]
    assert torch.equal(resumed[0][1], uninterrupted[1][1])
