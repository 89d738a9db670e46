"""Topology-free training (issue 30) on the real shard loader: the same recipe on 1 process (grad_accum 4),
2 processes (2), 4 processes (1) and 4 processes at tp_size 2 (2 data-parallel ranks) trains the same global batches with the same per-step losses, and a
run stopped mid-epoch at 2 processes resumes at 1 or 4 with exactly the next global batches, reading no
sample of the batches it skips."""

import shutil

import pytest

from tests.parallel.harness import run_workers
from tests.tiny_runs import tiny_overrides


def global_batches(ranks: list[dict]) -> list[list[int]]:
    """Each optimizer step's clips (manifest indices) over all ranks, in slice order."""
    accum = ranks[0]["grad_accum"]
    steps = len(ranks[0]["micro_batches"]) // accum
    return [[i for rank in ranks for k in range(accum) for i in rank["micro_batches"][step * accum + k]]
            for step in range(steps)]


@pytest.mark.slow
def test_one_two_and_four_processes_train_the_same_global_batches_and_resume_across_them(tiny_shards, tmp_path):
    def run(name, world_size, **extra):
        # fp32 on the CPU; the mean-pooling model has no routing, so a step's loss depends only on its clips
        values = dict(model__variant="meanpool", model__loss__contrastive=0.0, train__micro_batch=2,
                      train__global_batch=8, train__epochs=2, optim__lr=0.01, optim__eps=1e-4,
                      data__shuffle_block_shards=2)
        values.update(extra)
        overrides = tiny_overrides(tiny_shards, tmp_path / name, **values)
        return run_workers("tests.train.workers:train_recording_batches", world_size, timeout=900,
                           overrides=overrides, ds_config_path="ds_configs/zero2.json")

    one = run("one", 1)
    # loader workers 0 (the harness's processes are daemonic: no DataLoader workers); that 2 workers give
    # the same batches, frames included, is tests/data/test_global_order.py's
    two = run("two", 2, train__save_every_steps=1, train__keep_checkpoints=10)
    four = run("four", 4)
    assert [r["grad_accum"] for r in (one[0], two[0], four[0])] == [4, 2, 1]
    reference = global_batches(one)
    assert len(reference) == 4 and all(len(batch) == 8 for batch in reference)  # 16 videos / 8, 2 epochs
    assert sorted(reference[0] + reference[1]) == list(range(16))  # an epoch takes every sample once
    assert global_batches(two) == global_batches(four) == reference
    losses = one[0]["losses"]
    assert max(losses) - min(losses) > 1e-3  # the weights moved between the steps compared
    for ranks in (two, four):
        for rank in ranks:  # every rank logs the global batch's mean loss
            assert rank["losses"] == pytest.approx(losses, abs=1e-5)
    # tensor parallelism: 4 processes at parallel.tp_size=2 are 2 data-parallel ranks (grad_accum 2) whose
    # TP pairs read the same slices
    tp2 = run("tp2", 4, parallel__tp_size=2)
    assert tp2[0]["grad_accum"] == 2 and tp2[0]["micro_batches"] == tp2[1]["micro_batches"]
    assert global_batches([tp2[0], tp2[2]]) == reference
    for rank in tp2:
        assert rank["losses"] == pytest.approx(losses, abs=1e-5)

    # step 1 of the 2-process run (mid-epoch 0) resumed on 1 and on 4 processes
    tag = "checkpoints/step_00000001"
    for name, world_size in (("resumed_one", 1), ("resumed_four", 4)):
        shutil.copytree(tmp_path / "two" / tag, tmp_path / name / tag)
        resumed = run(name, world_size)
        assert resumed[0]["resumed_from"] == 1 and resumed[0]["steps"] == [2, 3, 4]
        assert global_batches(resumed) == reference[1:]
        assert resumed[0]["losses"] == pytest.approx(losses[1:], abs=1e-5)
        # every sample read was trained on, once: the 8 of the skipped global batch were read (let alone
        # decoded) only in epoch 1, where they come again
        opened = [i for rank in resumed for i in rank["opened"]]
        assert sorted(opened) == sorted(i for batch in reference[1:] for i in batch)
