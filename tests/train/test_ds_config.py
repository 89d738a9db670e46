import pytest
import torch

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.ds_config import read_ds_config, resolve_ds_config, training_dtype


def _cfg(*overrides):
    return load_config(None, ["train.micro_batch=4", "train.grad_accum=2", "optim.grad_clip=0.5", *overrides])


def test_auto_values_come_from_the_experiment_config():
    ds = resolve_ds_config(read_ds_config("ds_configs/zero2.json"), _cfg(), ParallelDims(4), on_gpu=False,
                           has_experts=True)
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 32 and ds["gradient_clipping"] == 0.5
    assert ds["bf16"] == {"enabled": False}
    assert resolve_ds_config({}, _cfg(), ParallelDims(1), on_gpu=True, has_experts=False)["bf16"] == {
        "enabled": True, "check_grad_overflow": True}


@pytest.mark.parametrize("precision, on_gpu, bf16", [("auto", False, False), ("auto", True, True),
                                                     ("bf16", False, True), ("fp32", True, False)])
def test_train_precision_decides_bf16(precision, on_gpu, bf16):
    cfg = _cfg(f"train.precision={precision}")
    ds = resolve_ds_config(read_ds_config("ds_configs/zero2.json"), cfg, ParallelDims(1), on_gpu=on_gpu, has_experts=True)
    assert ds["bf16"]["enabled"] is bf16
    assert training_dtype(precision, on_gpu) == (torch.bfloat16 if bf16 else torch.float32)


def test_a_json_bf16_switch_that_contradicts_train_precision_names_both():
    with pytest.raises(ConfigError, match=r"^train\.precision: fp32 .*bf16\.enabled=True"):
        resolve_ds_config({"bf16": {"enabled": True}}, _cfg("train.precision=fp32"), ParallelDims(1), True, True)
    assert resolve_ds_config({"bf16": {"enabled": "auto"}}, _cfg("train.precision=bf16"), ParallelDims(1), False,
                             True)["bf16"] == {"enabled": True, "check_grad_overflow": True}


def test_conflicting_batch_size_names_both_keys():
    with pytest.raises(ConfigError, match=r"^train\.micro_batch: 4 disagrees with .*train_micro_batch_size_per_gpu=8"):
        resolve_ds_config({"train_micro_batch_size_per_gpu": 8}, _cfg(), ParallelDims(1), False, True)
    with pytest.raises(ConfigError, match="train_batch_size=10"):
        resolve_ds_config({"train_batch_size": 10}, _cfg(), ParallelDims(2), False, True)


def test_the_global_batch_gives_deepspeed_the_accumulation_of_this_world_size():
    cfg = load_config(None, ["train.micro_batch=4", "train.global_batch=32"])
    for world_size, accum in ((1, 8), (2, 4), (8, 1)):
        ds = resolve_ds_config(read_ds_config("ds_configs/zero2.json"), cfg, ParallelDims(world_size), False, True)
        assert (ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (accum, 32)
    with pytest.raises(ConfigError, match=r"^train\.grad_accum \(derived from train\.global_batch for world size 2\): "
                                          r"4 disagrees with .*gradient_accumulation_steps=2"):
        resolve_ds_config({"gradient_accumulation_steps": 2}, cfg, ParallelDims(2), False, True)
    with pytest.raises(ConfigError, match=r"^train\.global_batch: 64 is not a multiple"):
        resolve_ds_config({}, load_config(None, ["train.micro_batch=32", "train.global_batch=64"]), ParallelDims(8), False, True)


def test_zero3_is_rejected_for_expert_models_only():
    with pytest.raises(ConfigError, match="ZeRO stage 3 does not support"):
        resolve_ds_config({"zero_optimization": {"stage": 3}}, _cfg(), ParallelDims(1), False, has_experts=True)
    assert resolve_ds_config({"zero_optimization": {"stage": 3}}, _cfg(), ParallelDims(1), False, has_experts=False)


def test_optimizer_section_and_fp16_are_rejected():
    with pytest.raises(ConfigError, match="optimizer"):
        resolve_ds_config({"optimizer": {"type": "Adam"}}, _cfg(), ParallelDims(1), False, True)
    with pytest.raises(ConfigError, match="fp16"):
        resolve_ds_config({"fp16": {"enabled": True}}, _cfg(), ParallelDims(1), True, True)


@pytest.mark.parametrize("name", ["zero1.json", "zero2.json", "zero2_offload.json"])
def test_shipped_configs_resolve(name):
    ds = resolve_ds_config(read_ds_config(f"ds_configs/{name}"), _cfg(), ParallelDims(2), False, True)
    assert ds["zero_optimization"]["stage"] in (1, 2)


def test_missing_or_broken_json_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_ds_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_ds_config(bad)


def test_without_clipping_deepspeed_computes_no_gradient_norm():
    zero2 = read_ds_config("ds_configs/zero2.json")
    unclipped = _cfg("optim.grad_clip=0")
    assert resolve_ds_config(zero2, unclipped, ParallelDims(2), True, True)["zero_optimization"]["compute_grad_norm"] is False
    assert "compute_grad_norm" not in resolve_ds_config(zero2, _cfg(), ParallelDims(2), True, True)["zero_optimization"]
    # offload and the ZeRO-1 bf16 optimizer (fp32 gradient accumulation) need the norm whatever the clipping
    offload = read_ds_config("ds_configs/zero2_offload.json")
    assert "compute_grad_norm" not in resolve_ds_config(offload, unclipped, ParallelDims(2), True, True)["zero_optimization"]
    zero1_fp32_grads = {**read_ds_config("ds_configs/zero1.json"), "data_types": {"grad_accum_dtype": "fp32"}}
    assert "compute_grad_norm" not in resolve_ds_config(zero1_fp32_grads, unclipped, ParallelDims(2), True,
                                                        True)["zero_optimization"]
    with pytest.raises(ConfigError, match=r"^optim\.grad_clip: 0\.5 clips .*compute_grad_norm=false"):
        resolve_ds_config({"zero_optimization": {"stage": 2, "compute_grad_norm": False}}, _cfg(), ParallelDims(2),
                          True, True)


def test_the_bf16_overflow_check_follows_skip_nonfinite_steps():
    zero2 = read_ds_config("ds_configs/zero2.json")
    off = resolve_ds_config(zero2, _cfg("optim.skip_nonfinite_steps=false"), ParallelDims(2), True, True)
    assert off["bf16"] == {"enabled": True, "check_grad_overflow": False}
    assert "check_grad_overflow" not in resolve_ds_config(zero2, _cfg(), ParallelDims(2), False, True)["bf16"]  # fp32


def test_overlap_comm_only_where_gradients_are_reduced():
    zero2 = read_ds_config("ds_configs/zero2.json")
    assert zero2["zero_optimization"]["overlap_comm"] is True
    assert resolve_ds_config(zero2, _cfg(), ParallelDims(2), True, True)["zero_optimization"]["overlap_comm"] is True
    assert resolve_ds_config(zero2, _cfg(), ParallelDims(1), True, True)["zero_optimization"]["overlap_comm"] is False
    # two processes of one tensor-parallel group are one data-parallel rank
    assert resolve_ds_config(zero2, _cfg(), ParallelDims(2, tp_size=2), True,
                             True)["zero_optimization"]["overlap_comm"] is False
