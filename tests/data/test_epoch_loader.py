"""Epoch plans: every rank gets the same number of batches, whatever the dataset size."""

import pytest

from vidprism_ds.data.epoch_loader import check_rank, eval_plan, train_batches_per_rank


def test_eval_plan_pads_every_worker_to_the_same_batch_count():
    plan = eval_plan(num_samples=10, batch_size=3, world_size=2, num_workers=2)
    assert (plan.batches_per_worker, plan.samples_per_worker, plan.batches_per_rank) == (1, 3, 2)
    assert eval_plan(0, 4, 2, 2).batches_per_rank == 0
    assert eval_plan(3, 2, 2, 2).batches_per_rank == 2  # more slots than samples: padding only


def test_train_epoch_is_whole_global_batches_and_never_empty():
    assert train_batches_per_rank(num_samples=10, micro_batch=2, world_size=2) == 2
    assert train_batches_per_rank(num_samples=3, micro_batch=2, world_size=2) == 1  # fewer than one global batch


def test_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2 is not in"):
        check_rank(2, 2, 1)
    with pytest.raises(ValueError, match="batch size"):
        check_rank(0, 1, 0)


def test_only_a_loader_that_can_start_part_way_takes_a_start_batch():
    from vidprism_ds.data.epoch_loader import EpochLoader

    made = []
    streaming = EpochLoader(lambda epoch: made.append(epoch) or [], 4, 0, 8)
    with pytest.raises(ValueError, match="cannot start an epoch part-way"):
        streaming.set_epoch(1, start_batch=2)
    streaming.set_epoch(1)
    assert list(streaming) == [] and made == [1]
    resumable = EpochLoader(lambda epoch, start: made.append((epoch, start)) or [], 4, 0, 8, starts_anywhere=True)
    resumable.set_epoch(2, start_batch=3)
    assert list(resumable) == [] and made[-1] == (2, 3)
    with pytest.raises(ValueError, match="outside the epoch's 4 batches"):
        resumable.set_epoch(2, start_batch=5)
