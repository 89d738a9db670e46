"""Tensor parallelism of the frame encoder: the shard layout, the config rules, and on gloo processes
the tower and whole training runs at tp_size 2 against tp_size 1 (docs/parallel.md#tensor-parallelism)."""

import shutil

import pytest
import torch

from tests.parallel.harness import run_workers
from tests.tiny_runs import tiny_overrides
from vidprism_ds.config.schema import BackboneConfig, ConfigError
from vidprism_ds.model.backbone import build_frame_encoder
from vidprism_ds.model.tower_attention import PackedSelfAttention
from vidprism_ds.parallel.context import ParallelContext
from vidprism_ds.parallel.tensor_parallel import TensorParallelLayout, apply_tensor_parallel


def _context(tp_size: int) -> ParallelContext:
    return ParallelContext(world_size=tp_size, rank=0, ep_size=1, ep_rank=0, ep_group=None, expert_data_group=None,
                           tp_size=tp_size)


def test_the_packed_qkv_projection_is_split_by_heads():
    heads, head_dim = 4, 2
    width = heads * head_dim
    full = torch.arange(3 * width * 5, dtype=torch.float32).reshape(3 * width, 5)  # rows: q, k, v
    layout = TensorParallelLayout("attn.in_proj_weight", "attn.qkv.weight", split_dim=0, packed=3)
    shard = layout.shard(full, rank=1, size=2)
    # rank 1 of 2 owns heads 2 and 3: rows 4..7 of each of q, k and v
    expected = torch.cat([full[4:8], full[width + 4:width + 8], full[2 * width + 4:2 * width + 8]])
    assert torch.equal(shard, expected)
    shards = [layout.shard(full, r, 4) for r in range(4)]
    assert torch.equal(layout.assemble(shards), full)
    bias = torch.arange(3 * width, dtype=torch.float32)
    bias_layout = TensorParallelLayout("attn.in_proj_bias", "attn.qkv.bias", split_dim=0, packed=3)
    assert bias_layout.shard(bias, 0, 2).tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]


def test_a_row_parallel_weight_is_split_on_its_input_features():
    full = torch.randn(6, 8)
    layout = TensorParallelLayout("mlp.c_proj.weight", "mlp.c_proj.weight", split_dim=1)
    shards = [layout.shard(full, r, 2) for r in range(2)]
    assert torch.equal(shards[1], full[:, 4:])
    assert torch.equal(layout.assemble(shards), full)


def test_tp_size_one_leaves_the_encoder_as_it_is():
    encoder, _ = build_frame_encoder(BackboneConfig(arch="tiny", image_size=32))
    before = {name: type(module) for name, module in encoder.named_modules()}
    assert apply_tensor_parallel(encoder, _context(1)) == 0
    assert {name: type(module) for name, module in encoder.named_modules()} == before
    assert isinstance(encoder.visual.transformer.resblocks[0].attn, PackedSelfAttention)


def test_a_tp_size_that_does_not_divide_the_heads_is_refused_naming_the_key():
    encoder, _ = build_frame_encoder(BackboneConfig(arch="tiny", image_size=32))  # 2 heads of width 32
    with pytest.raises(ConfigError,
                       match=r"^parallel\.tp_size: 4 does not divide the frame encoder's 2 attention heads"):
        apply_tensor_parallel(encoder, _context(4))


def test_tp_size_below_one_is_refused_by_the_config():
    from vidprism_ds.config import load_config

    with pytest.raises(ConfigError, match=r"^parallel\.tp_size: must be >= 1"):
        load_config(None, ["parallel.tp_size=0"])


@pytest.mark.slow
def test_the_tensor_parallel_tower_computes_the_unsharded_outputs_and_gradients():
    for report in run_workers("tests.parallel.tp_workers:tower_forward_backward", 2, timeout=900, tp_size=2):
        assert report["blocks"] == 2
        # attention q/k/v, its output projection and both MLP matrices of each block are sharded; the row-
        # parallel biases, LayerNorms, embeddings and proj are replicated
        assert len(report["sharded"]) == 12
        assert "visual.transformer.resblocks.0.attn.out_proj.bias" not in report["sharded"]
        assert report["local_shapes"]["visual.transformer.resblocks.0.attn.in_proj_weight"] == (96, 64)
        assert report["local_shapes"]["visual.transformer.resblocks.0.mlp.c_proj.weight"] == (64, 128)
        assert report["state_keys"] == report["reference_keys"]  # tp_full_name gives the tp_size 1 names
        assert max(report["weight_diffs"].values()) == 0.0  # the shards are cut from the same weights
        assert report["out_diff"] < 1e-5
        assert max(report["grad_diffs"].values()) < 1e-4
        assert len(report["grad_diffs"]) == len(report["reference_keys"])


@pytest.mark.slow
def test_tp2_trains_the_same_steps_and_export_as_tp1_with_and_without_expert_parallelism(tiny_shards, tmp_path):
    """The same global batches (8 clips: 2 data-parallel ranks x 4, or 1 x 4 x grad_accum 2) at TP=1 x EP=1
    on 2 processes, TP=2 (data-parallel 1) on 2, and TP=2 x EP=2 (data-parallel 2) on 4."""
    def run(name, world_size, tp, ep, **extra):
        overrides = tiny_overrides(tiny_shards, tmp_path / name, parallel__tp_size=tp, parallel__ep_size=ep,
                                   train__global_batch=8, train__epochs=2, optim__lr=0.01,
                                   optim__eps=1e-4, **extra)  # eps above fp32 noise: see tests/parallel/workers.py
        return run_workers("tests.parallel.tp_workers:train_on_global_batches", world_size, timeout=900,
                           overrides=overrides, ds_config_path="ds_configs/zero2.json",
                           export_path=str(tmp_path / name / "export.pt"))

    reference = run("tp1", 2, tp=1, ep=1)
    tp2 = run("tp2", 2, tp=2, ep=1, train__save_every_steps=1, train__keep_checkpoints=10)
    tp2_ep2 = run("tp2_ep2", 4, tp=2, ep=2)
    assert [r["dp_rank"] for r in tp2] == [0, 0] and [r["dp_rank"] for r in tp2_ep2] == [0, 0, 1, 1]
    assert (reference[0]["grad_accum"], tp2[0]["grad_accum"], tp2_ep2[0]["grad_accum"]) == (1, 2, 1)
    assert "x 1 data-parallel rank (2 processes, parallel.tp_size=2)" in tp2[0]["printed"]
    losses = reference[0]["losses"]
    assert len(losses) == 4 and max(losses) - min(losses) > 1e-2  # the steps differ
    for run_ranks in (tp2, tp2_ep2):
        assert run_ranks[0]["losses"] == pytest.approx(losses, rel=1e-4)
        # the replicated parameters (LayerNorms, head, experts) stayed identical within each TP group
        assert max(r["replica_divergence"] for r in run_ranks) == 0.0
        export = run_ranks[0]["export"]
        assert sorted(export) == sorted(reference[0]["export"])
        for key, value in reference[0]["export"].items():
            assert torch.allclose(export[key], value, rtol=1e-4, atol=1e-5), key

    # TP=2's checkpoint after step 2 resumed at TP=1 (2 data-parallel ranks): the sharded tower's fp32
    # masters and Adam moments come back whole, so steps 3 and 4 are the ones every topology took (a fresh
    # optimizer would take a different step 3 update, visible in step 4's loss)
    tag = "checkpoints/step_00000002"
    shutil.copytree(tmp_path / "tp2" / tag, tmp_path / "resumed" / tag)
    resumed = run("resumed", 2, tp=1, ep=1)[0]
    assert resumed["resumed_from"] == 2 and resumed["optimizer_restored"] and resumed["steps"] == [3, 4]
    assert resumed["losses"] == pytest.approx(losses[2:], rel=1e-4)
