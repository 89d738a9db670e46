"""The training stages' guarantees: each (rank, worker) slot its own share of the shard order, a shuffle
that a resumed epoch repeats exactly, and an epoch of exactly the rank's batches."""

import itertools
from types import SimpleNamespace

import pytest
import torch

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import stages


@pytest.fixture
def as_worker(monkeypatch):
    """``as_worker(id, count)``: make the stages (and webdataset) believe they run in that DataLoader worker."""
    monkeypatch.delenv("WORKER", raising=False)  # webdataset would take the worker from these first
    monkeypatch.delenv("NUM_WORKERS", raising=False)

    def set_worker(worker: int, workers: int) -> None:
        info = SimpleNamespace(id=worker, num_workers=workers)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)

    return set_worker


def test_each_slot_takes_every_count_th_item_of_the_permutation_rounds(as_worker):
    items = list("abcde")  # fewer items than rounds are long: slots still all get items
    stream = list(itertools.islice(stages.permutation_rounds(items, seed=3, epoch=1), 40))
    assert sorted(stream[:5]) == items and sorted(stream[5:10]) == items  # every round is a permutation
    assert stream[:10] != list(itertools.islice(stages.permutation_rounds(items, seed=3, epoch=2), 10))
    for rank, worker in itertools.product(range(2), range(2)):
        as_worker(worker, 2)
        taken = list(itertools.islice(stages.endless_permutations(items, 3, 1, rank, 2), 10))
        assert taken == stream[rank * 2 + worker::4], (rank, worker)  # slot = rank x workers + worker


def test_shuffle_buffer_repeats_per_epoch_and_slot_and_starts_before_it_is_full(as_worker):
    as_worker(0, 1)

    def shuffled(epoch=0, rank=0, bufsize=8):
        return list(stages.shuffle_buffer(iter(range(50)), bufsize, seed=1, epoch=epoch, rank=rank, world_size=2))

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

    next(stages.shuffle_buffer(source(), 8, seed=1, epoch=0, rank=0, world_size=1))
    assert read == [0, 1]  # two in, one out while filling: the first batch does not wait for 8


def test_worker_shares_add_up_to_the_rank_batches(as_worker):
    shares = []
    for worker in range(2):
        as_worker(worker, 2)
        source = iter(range(100))
        shares.append(len(list(stages.take_worker_share(source, batches_per_rank=5, batch_size=2))))
        assert next(source) == shares[-1]  # nothing read past the share
    assert shares == [6, 4]  # 5 batches of 2: the first worker takes the odd one


def test_direction_sensitive_datasets_are_never_flipped():
    def flip(**overrides):
        return stages.TrainClipSettings.from_config(DataConfig(num_frames=4, image_size=32, **overrides)).flip

    assert flip(dataset="k400", hflip=True)
    assert not flip(dataset="k400", hflip=False)
    assert not flip(dataset="ssv2", hflip=True)


def test_decoded_frames_come_back_in_pick_order_repeats_and_all():
    from torchvision.io import encode_jpeg

    class Member(SimpleNamespace):
        def read(self) -> bytes:
            return self.data

    # three flat frames of grey 0, 120 and 240: each decodes to about its own value
    members = [Member(name=f"{k}.jpg", data=encode_jpeg(torch.full((3, 8, 8), 120 * k, dtype=torch.uint8)).numpy().tobytes())
               for k in range(3)]
    for picks in ([0, 1, 2], [2, 0, 1], [0, 2, 1, 2], [1, 1]):  # a multirate clip's parts are not one ascending run
        greys = stages.decode_jpegs(members, picks).float().mean(dim=(1, 2, 3))
        assert (greys / 120).round().long().tolist() == picks
