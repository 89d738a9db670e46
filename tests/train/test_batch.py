"""The global batch arithmetic: grad_accum derived per world size, its errors, lr scaling, resume positions."""

import math

import pytest

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.batch import BatchPlan, lr_scale, micro_batches_to_skip, plan_batch


def _train(*overrides):
    return load_config(None, list(overrides)).train


@pytest.mark.parametrize("world_size, grad_accum", [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_grad_accum_is_derived_so_the_global_batch_stays(world_size, grad_accum):
    plan = plan_batch(_train("train.global_batch=64", "train.micro_batch=8"), ParallelDims(world_size))
    assert plan == BatchPlan(micro_batch=8, grad_accum=grad_accum, dims=ParallelDims(world_size))
    assert plan.global_batch == 64


def test_without_a_global_batch_it_grows_with_the_world_size():
    plan = plan_batch(_train("train.micro_batch=8", "train.grad_accum=3"), ParallelDims(4))
    assert (plan.grad_accum, plan.global_batch) == (3, 96)


def test_a_grad_accum_that_agrees_is_accepted_and_one_that_does_not_names_both_keys():
    assert plan_batch(_train("train.global_batch=64", "train.micro_batch=8", "train.grad_accum=4"), ParallelDims(2)).grad_accum == 4
    with pytest.raises(ConfigError, match=r"^train\.grad_accum: 3 disagrees with train\.global_batch 64 = "
                                          r"train\.micro_batch 8 x grad_accum 4 x world size 2"):
        plan_batch(_train("train.global_batch=64", "train.micro_batch=8", "train.grad_accum=3"), ParallelDims(2))


def test_a_global_batch_the_micro_batch_cannot_make_names_a_micro_batch_that_can():
    # 8 processes x 32 clips = 256 > 64: each process must train 8 clips a step
    with pytest.raises(ConfigError, match=r"^train\.global_batch: 64 is not a multiple of train\.micro_batch x "
                                          r"world size \(32 x 8 = 256\).*set train\.micro_batch to a divisor of 8 "
                                          r"\(e\.g\. 8, with grad_accum 1\)"):
        plan_batch(_train("train.global_batch=64", "train.micro_batch=32"), ParallelDims(8))
    with pytest.raises(ConfigError, match=r"divisor of 20 \(e\.g\. 10, with grad_accum 2\)"):
        plan_batch(_train("train.global_batch=40", "train.micro_batch=12"), ParallelDims(2))


def test_a_world_size_that_does_not_divide_the_global_batch_is_named():
    with pytest.raises(ConfigError, match=r"^train\.global_batch: 64 .*3 processes cannot share it evenly"):
        plan_batch(_train("train.global_batch=64", "train.micro_batch=8"), ParallelDims(3))


def test_tensor_parallel_ranks_share_a_batch_so_the_arithmetic_counts_data_parallel_ranks():
    train = _train("train.global_batch=64", "train.micro_batch=8")
    # 8 processes in TP groups of 4: 2 model replicas read data, so each accumulates 4 micro-batches
    plan = plan_batch(train, ParallelDims(8, tp_size=4))
    assert plan == BatchPlan(micro_batch=8, grad_accum=4, dims=ParallelDims(8, tp_size=4))
    assert plan.dp_size == 2
    assert plan.global_batch == 64
    assert plan.describe() == ("global batch 64 = micro-batch 8 x grad_accum 4 x 2 data-parallel ranks "
                               "(8 processes, parallel.tp_size=4)")
    assert plan_batch(train, ParallelDims(8)).describe() == "global batch 64 = micro-batch 8 x grad_accum 1 x 8 processes"
    with pytest.raises(ConfigError, match=r"^train\.global_batch: 64 is not a multiple of train\.micro_batch x "
                                          r"data-parallel size \(world size 6 / parallel\.tp_size 2\) \(8 x 3 = 24\), "
                                          r"and 3 data-parallel ranks cannot share it evenly"):
        plan_batch(train, ParallelDims(6, tp_size=2))


def test_a_negative_global_batch_is_refused():
    with pytest.raises(ConfigError, match=r"^train\.global_batch: must be >= 0"):
        plan_batch(_train("train.global_batch=-32"), ParallelDims(1))


def test_steps_per_epoch_are_the_same_on_any_world_size():
    # the loader's epoch per rank is num_samples // (micro_batch x world size) (data.loaders)
    samples = 1000
    steps = set()
    for world_size in (1, 2, 4, 8):
        plan = plan_batch(_train("train.global_batch=32", "train.micro_batch=4"), ParallelDims(world_size))
        steps.add(plan.steps_per_epoch(samples // (plan.micro_batch * world_size)))
    assert steps == {samples // 32}


@pytest.mark.parametrize("rule, factor", [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_lr_scaling_rules(rule, factor):
    train = _train(f"train.lr_scaling={rule}", "train.lr_base_batch=64")
    assert lr_scale(train, 256) == pytest.approx(factor)
    assert lr_scale(train, 64) == pytest.approx(1.0)


def test_lr_scaling_needs_the_batch_the_lr_was_tuned_for():
    with pytest.raises(ConfigError, match=r"^train\.lr_base_batch: train\.lr_scaling=sqrt"):
        lr_scale(_train("train.lr_scaling=sqrt"), 64)
    with pytest.raises(ConfigError, match=r"^train\.lr_base_batch: must be >= 0"):
        lr_scale(_train("train.lr_base_batch=-1"), 64)
    assert math.isclose(lr_scale(_train("train.lr_scaling=linear", "train.lr_base_batch=64"), 16), 0.25)


def test_an_unknown_lr_scaling_rule_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.lr_scaling"):
        load_config(None, ["train.lr_scaling=cubic"])


def test_a_resume_at_another_world_size_keeps_the_clips_seen_in_the_epoch():
    one_process = BatchPlan(micro_batch=4, grad_accum=2, dims=ParallelDims(1))
    # 3 optimizer steps of 8 clips on 2 processes x 4 clips (grad_accum 1): 24 clips = 6 micro-batches here
    assert micro_batches_to_skip(3, 4, 2, one_process) == 6
    # another micro-batch too: 3 micro-batches of 8 clips on 2 processes = 48 clips = 3 steps of 16 on 2 x 8
    assert micro_batches_to_skip(3, 8, 2, BatchPlan(micro_batch=8, grad_accum=1, dims=ParallelDims(2))) == 3
    # tags written before the micro-batch was recorded (0): this run's
    assert micro_batches_to_skip(4, 0, 2, one_process) == 8
    # a position inside an optimizer step (another global batch) goes back to the step's start
    assert micro_batches_to_skip(3, 4, 1, BatchPlan(micro_batch=4, grad_accum=2, dims=ParallelDims(1))) == 2


def test_a_resume_continues_with_the_next_global_batch_at_any_topology():
    from types import SimpleNamespace

    from vidprism_ds.train.batch import resume_micro_batch

    def saved(done, world_size=2, micro_batch=4, global_batch=16, batches_in_epoch=0):
        return SimpleNamespace(global_batches_in_epoch=done, world_size=world_size, tp_size=1, ep_size=1,
                               micro_batch=micro_batch, global_batch=global_batch, batches_in_epoch=batches_in_epoch)

    # global batch 16: 3 done -> this run's micro-batch 3 x grad_accum, whatever the world size
    assert resume_micro_batch(saved(3), BatchPlan(4, 4, ParallelDims(1))) == 12
    assert resume_micro_batch(saved(3), BatchPlan(4, 1, ParallelDims(4))) == 3
    assert resume_micro_batch(saved(3), BatchPlan(2, 2, ParallelDims(8, tp_size=2))) == 6  # 4 data-parallel ranks
    # another global batch (32): 48 clips seen, rounded down to 1 whole global batch of 32
    assert resume_micro_batch(saved(3), BatchPlan(4, 4, ParallelDims(2))) == 4
    # a tag written before the position was recorded: the clips seen (micro_batches_to_skip)
    assert resume_micro_batch(saved(-1, batches_in_epoch=6), BatchPlan(4, 4, ParallelDims(1))) == 12
