"""Trainer runs on gloo processes: ZeRO-2 (and ZeRO-Offload) equal plain data parallelism, EP=2 equals EP=1;
a global batch trains the same experiment on 1 process as on 2, resumed across them too."""

import shutil

import pytest

from tests.parallel.harness import run_workers
from tests.tiny_runs import tiny_overrides


@pytest.mark.slow
def test_zero2_and_ep2_take_the_same_steps_as_plain_ep1(tiny_shards, tmp_path):
    def run(name, ep, stage, offload=False):
        overrides = tiny_overrides(tiny_shards, tmp_path / name, parallel__ep_size=ep, train__epochs=2,
                                   # eps above fp32 noise: see tests/parallel/workers.py
                                   optim__eps=1e-4)
        ds = {"zero_optimization": {"stage": stage, "contiguous_gradients": True}}
        if offload:
            ds["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
        return run_workers("tests.train.workers:train_and_report", 2, overrides=overrides,
                           ds_config_path="ds_configs/zero2.json", ds_overrides=ds)[0]

    plain = run("plain", ep=1, stage=0)
    zero2 = run("zero2", ep=1, stage=2)
    ep2 = run("ep2", ep=2, stage=2)
    assert len(plain["losses"]) == 4  # 16 videos / (2 ranks x 4) x 2 epochs
    assert zero2["losses"] == pytest.approx(plain["losses"], abs=1e-5)
    assert ep2["losses"] == pytest.approx(plain["losses"], abs=1e-5)
    assert ep2["eval"]["top1"] == pytest.approx(plain["eval"]["top1"])
    assert plain["eval"]["samples"] == 8
    # ZeRO-Offload: optimizer state and step on the CPU with DeepSpeed's CPU AdamW (its own kernel, so
    # rounding differs slightly from torch's AdamW).
    offload = run("offload", ep=2, stage=2, offload=True)
    assert offload["losses"] == pytest.approx(plain["losses"], abs=1e-4)  # every validation video counted once over both ranks


@pytest.mark.slow
def test_a_global_batch_trains_the_same_steps_on_one_process_as_on_two(tiny_shards, tmp_path):
    """The epoch plan from the real loader, and the losses on random stand-in batches cut by rank
    (tests.train.workers.GlobalBatchSlices: no decode cost). The real loader's global batches are the same
    on every world size too: tests/train/test_topology_free.py trains on them."""
    def run(name, world_size, **extra):
        overrides = tiny_overrides(tiny_shards, tmp_path / name, model__variant="meanpool", model__loss__contrastive=0.0,
                                   train__global_batch=8, train__epochs=2, optim__lr=0.01, optim__eps=1e-4, **extra)
        return run_workers("tests.train.workers:train_on_world_independent_batches", world_size, overrides=overrides,
                           ds_config_path="ds_configs/zero2.json")

    one = run("one", 1)[0]
    two_ranks = run("two", 2, parallel__ep_size=2, train__save_every_steps=1, train__keep_checkpoints=10)
    two = two_ranks[0]
    # 16 videos an epoch: 4 micro-batches of 4 accumulated 2 at a time, or 2 on each of 2 processes
    assert (one["batches_per_rank"], one["grad_accum"], two["batches_per_rank"], two["grad_accum"]) == (4, 2, 2, 1)
    assert one["global_batch"] == two["global_batch"] == 8
    assert one["steps_per_epoch"] == two["steps_per_epoch"] == 2 and one["total_steps"] == two["total_steps"] == 4
    assert "global batch 8 = micro-batch 4 x grad_accum 2 x 1 process: 2 optimizer steps an epoch" in one["printed"]
    assert one["clips_served"] == sum(rank["clips_served"] for rank in two_ranks) == 32
    assert one["steps"] == two["steps"] == [1, 2, 3, 4]
    assert one["lrs"] == pytest.approx(two["lrs"], rel=1e-12)  # the same warmup and cosine
    assert max(one["losses"]) - min(one["losses"]) > 1e-3  # the weights moved between the steps compared
    assert one["losses"] == pytest.approx(two["losses"], abs=1e-5)
    # the mean-pooling model has no experts: parallel.ep_size=2 changes nothing, said once (rank 0)
    assert two["printed"].count("warning: parallel.ep_size=2 has no effect: model.variant=meanpool") == 1
    assert "has no effect" not in two_ranks[1]["printed"]

    # the 2-process run's step 1 resumed on 1 process: the remaining steps of the same schedule
    tag = "checkpoints/step_00000001"
    shutil.copytree(tmp_path / "two" / tag, tmp_path / "resumed" / tag)
    resumed = run("resumed", 1)[0]
    assert resumed["resumed_from"] == 1 and resumed["steps"] == [2, 3, 4]
    assert resumed["lrs"] == pytest.approx(two["lrs"][1:], rel=1e-12)
