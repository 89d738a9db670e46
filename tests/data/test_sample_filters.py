"""The sample stages' guarantees: a shuffle that a resumed epoch repeats exactly, and an epoch of exactly
the rank's batches."""

from vidprism_ds.data import sample_filters


def test_shuffle_buffer_repeats_per_epoch_and_slot_and_starts_before_it_is_full(as_worker):
    as_worker(0, 1)

    def shuffled(epoch=0, rank=0, bufsize=8):
        return list(sample_filters.shuffle_buffer(iter(range(50)), bufsize, seed=1, epoch=epoch, rank=rank,
                                                  world_size=2))

    first = shuffled()
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert shuffled() == first  # a resumed epoch sees the same order
    assert shuffled(epoch=1) != first and shuffled(rank=1) != first
    assert shuffled(bufsize=1) == shuffled(bufsize=0) == list(range(50))  # 0 or 1: off
    read = []

    def source():
        for i in range(50):
            read.append(i)
            yield i

    next(sample_filters.shuffle_buffer(source(), 8, seed=1, epoch=0, rank=0, world_size=1))
    assert read == [0, 1]  # two in, one out while filling: the first batch does not wait for 8


def test_worker_shares_add_up_to_the_rank_batches(as_worker):
    shares = []
    for worker in range(2):
        as_worker(worker, 2)
        source = iter(range(100))
        shares.append(len(list(sample_filters.take_worker_share(source, batches_per_rank=5, batch_size=2))))
        assert next(source) == shares[-1]  # nothing read past the share
    assert shares == [6, 4]  # 5 batches of 2: the first worker takes the odd one
