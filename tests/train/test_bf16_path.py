"""The GPU path's numerics on CPU: bf16 weights under DeepSpeed, EP=2, ZeRO-2, the text-contrastive loss on,
evaluation, checkpoint, resume and export, on 2 gloo processes (DeepSpeed's CPU accelerator runs bf16)."""

import math

import pytest

from tests.parallel.harness import run_workers
from tests.tiny_runs import tiny_overrides


@pytest.mark.slow
def test_bf16_ep2_zero2_with_contrastive_trains_resumes_and_exports(tiny_shards, tmp_path):
    def run(name, **extra):
        overrides = tiny_overrides(tiny_shards, tmp_path / name, train__precision="bf16", parallel__ep_size=2,
                                   model__loss__contrastive=0.01, model__text_cache_dir=tmp_path / "text",
                                   train__epochs=2, train__save_every_steps=1, **extra)
        return run_workers("tests.train.workers:train_bf16_and_report", 2, overrides=overrides,
                           ds_config_path="ds_configs/zero2.json")[0]

    straight = run("straight")
    assert straight["steps"] == [1, 2, 3, 4]  # 16 videos / (2 ranks x 4) x 2 epochs
    assert all(math.isfinite(loss) for loss in straight["losses"])
    assert straight["terms"]["contrastive"] > 0  # the bf16 projection met the fp32 text embeddings
    assert straight["eval"]["samples"] == 8 and math.isfinite(straight["eval"]["top1"])
    assert straight["export_dtypes"] == ["torch.float32"] and straight["export_keys"] > 0

    # stopped after 2 steps, then the same run again: it resumes from step 2 and takes the same steps
    first = run("resumed", train__max_steps=2)
    assert first["steps"] == [1, 2]
    second = run("resumed")
    assert second["resumed_from"] == 2 and second["steps"] == [3, 4]
    assert first["losses"] + second["losses"] == pytest.approx(straight["losses"], rel=1e-6)
    assert second["eval"]["top1"] == pytest.approx(straight["eval"]["top1"])
