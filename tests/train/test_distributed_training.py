"""Trainer runs on 2 gloo processes: ZeRO-2 (and ZeRO-Offload) equal plain data parallelism, EP=2 equals EP=1."""

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
