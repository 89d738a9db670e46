"""DeviceBatches (vidprism_ds.train.device_batches): one batch ahead, in order, nothing lost."""

import pytest
import torch

from vidprism_ds.train.device_batches import DeviceBatches


def test_the_next_batch_is_prepared_before_the_current_one_is_handed_over():
    prepared, seen = [], []

    def prepare(batch):
        prepared.append(batch["index"])
        return {"index": batch["index"], "frames": batch["frames"] * 2}

    batches = [{"index": i, "frames": torch.full((2,), float(i))} for i in range(4)]
    for item in DeviceBatches(batches, prepare, torch.device("cpu")):
        # when the step gets batch n, batch n+1 has been queued already (the last has nothing after it)
        assert prepared[-1] == min(item["index"] + 1, 3)
        seen.append(item["index"])
        assert torch.equal(item["frames"], torch.full((2,), 2.0 * item["index"]))
    assert seen == prepared == [0, 1, 2, 3]


def test_an_empty_source_gives_nothing():
    assert list(DeviceBatches([], lambda b: b, torch.device("cpu"))) == []


def test_stopping_early_reads_at_most_one_batch_more():
    pulled = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield {"index": i}

    for item in DeviceBatches(source(), dict, torch.device("cpu")):
        if item["index"] == 2:
            break
    assert pulled == [0, 1, 2, 3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the side stream needs a GPU")
def test_on_a_gpu_the_step_sees_the_copied_values():
    device = torch.device("cuda")
    host = [{"frames": torch.arange(6, dtype=torch.uint8).pin_memory() + i} for i in range(3)]
    got = [item["frames"].cpu() for item in DeviceBatches(
        host, lambda b: {"frames": b["frames"].to(device, non_blocking=True)}, device)]
    assert all(torch.equal(g, h["frames"]) for g, h in zip(got, host))
