"""The training source's guarantee: each (rank, worker) slot its own share of the shard order."""

import itertools

from vidprism_ds.data import shard_source


def test_each_slot_takes_every_count_th_item_of_the_permutation_rounds(as_worker):
    items = list("abcde")  # fewer items than rounds are long: slots still all get items
    stream = list(itertools.islice(shard_source.permutation_rounds(items, seed=3, epoch=1), 40))
    assert sorted(stream[:5]) == items and sorted(stream[5:10]) == items  # every round is a permutation
    assert stream[:10] != list(itertools.islice(shard_source.permutation_rounds(items, seed=3, epoch=2), 10))
    for rank, worker in itertools.product(range(2), range(2)):
        as_worker(worker, 2)
        taken = list(itertools.islice(shard_source.endless_permutations(items, 3, 1, rank, 2), 10))
        assert taken == stream[rank * 2 + worker::4], (rank, worker)  # slot = rank x workers + worker
