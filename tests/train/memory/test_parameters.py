"""Parameters, gradients and optimizer state per rank (vidprism_ds.train.memory.parameters), through
estimate_peak_memory: ZeRO stages, expert parallelism, offload, tensor parallelism."""

import math

import pytest
import torch

from tests.train.memory.common import dims, resolved_ds, tiny_cfg, tiny_model
from vidprism_ds.parallel import ParallelContext, parallelize_model
from vidprism_ds.train.ds_config import resolve_ds_config
from vidprism_ds.train.memory.estimate import WORKSPACE_BYTES, estimate_peak_memory


def _by_hand(model, ep_size):
    """Elements counted from the parameter names: experts live under head.experts.<id>., all the same size."""
    named = list(model.named_parameters())
    experts = [p for n, p in named if n.startswith("head.experts.")]
    dense = [p for n, p in named if not n.startswith("head.experts.")]
    num_experts = len(model.head.experts)
    local = num_experts // ep_size
    per_expert = sum(p.numel() for p in experts) // num_experts
    per_expert_trainable = sum(p.numel() for p in experts if p.requires_grad) // num_experts
    return dict(dense=sum(p.numel() for p in dense), dense_tr=sum(p.numel() for p in dense if p.requires_grad),
                expert=per_expert * local, expert_tr=per_expert_trainable * local)


@pytest.mark.parametrize("name, stage", [("zero1.json", 1), ("zero2.json", 2), (None, 0)])
@pytest.mark.parametrize("ep_size", [1, 2])
def test_bf16_parameter_gradient_and_optimizer_bytes_per_zero_stage(name, stage, ep_size):
    world = 4
    # a partly frozen backbone: frozen parameters take memory but have no gradients or optimizer state
    cfg = tiny_cfg("model.backbone.freeze=partial", "model.backbone.trainable_blocks=1", f"parallel.ep_size={ep_size}")
    model = tiny_model(cfg)
    ds = resolved_ds(name, cfg, world) if name else resolve_ds_config({"zero_optimization": {"stage": 0}}, cfg,
                                                                      dims(cfg, world), True, True)
    est = estimate_peak_memory(model, cfg, ds, dims(cfg, world, ep_size), activation_bytes_per_frame=1000.0)
    n = _by_hand(model, ep_size)
    assert n["dense_tr"] < n["dense"]  # the freeze took effect
    expert_dp = world // ep_size
    assert est.parameter_bytes == 2 * (n["dense"] + n["expert"])  # bf16, only this rank's experts
    grads = (math.ceil(n["dense_tr"] / world) + math.ceil(n["expert_tr"] / expert_dp) if stage == 2
             else n["dense_tr"] + n["expert_tr"])
    assert est.gradient_bytes == 2 * grads
    # fp32 master (4) + Adam m, v (8) per trainable element, partitioned from ZeRO-1 on
    state = (math.ceil(n["dense_tr"] / world) + math.ceil(n["expert_tr"] / expert_dp) if stage >= 1
             else n["dense_tr"] + n["expert_tr"])
    assert est.optimizer_bytes == 12 * state
    assert est.activation_bytes == 1000 * 2 * 8  # per frame x micro_batch x num_frames
    assert est.workspace_bytes >= WORKSPACE_BYTES
    assert est.total_bytes == (est.parameter_bytes + est.gradient_bytes + est.optimizer_bytes
                               + est.activation_bytes + est.workspace_bytes)


def test_expert_parallelism_halves_the_expert_share_only():
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    ds = resolved_ds("zero2.json", cfg, 4)
    one = estimate_peak_memory(model, cfg, ds, dims(cfg, 4, 1), 0.0)
    two = estimate_peak_memory(model, cfg, ds, dims(cfg, 4, 2), 0.0)
    expert_elements = sum(p.numel() for p in model.head.experts.parameters())
    assert one.parameter_bytes - two.parameter_bytes == 2 * expert_elements // 2
    # ZeRO-2 over 4 ranks vs, for the experts, over their 2 replicas: half the experts, twice the share each
    assert two.gradient_bytes == one.gradient_bytes
    assert two.optimizer_bytes == one.optimizer_bytes


def test_a_sharded_model_gives_the_same_estimate_as_the_planned_placement():
    cfg = tiny_cfg("parallel.ep_size=2")
    ds = resolved_ds("zero2.json", cfg, 4)
    planned = estimate_peak_memory(tiny_model(cfg), cfg, ds, dims(cfg, 4, 2), 0.0)
    sharded = tiny_model(cfg)
    ctx = ParallelContext(world_size=4, rank=0, ep_size=2, ep_rank=0, ep_group=None, expert_data_group=None)
    parallelize_model(sharded, ctx)  # keeps rank 0's experts, tagged for DeepSpeed (is_moe_param)
    assert estimate_peak_memory(sharded, cfg, ds, dims(cfg, 4, 2), 0.0) == planned


def test_offload_moves_the_optimizer_state_off_the_gpu():
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    on_gpu = estimate_peak_memory(model, cfg, resolved_ds("zero2.json", cfg, 2), dims(cfg, 2, 1), 0.0)
    offload = estimate_peak_memory(model, cfg, resolved_ds("zero2_offload.json", cfg, 2), dims(cfg, 2, 1), 0.0)
    assert on_gpu.optimizer_bytes > 0 and offload.optimizer_bytes == 0
    assert offload.gradient_bytes == on_gpu.gradient_bytes


def test_fp32_training_has_a_master_copy_only_under_zero():
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bf16 = estimate_peak_memory(model, cfg, resolved_ds("zero2.json", cfg, 1), dims(cfg, 1, 1), 0.0)
    fp32 = estimate_peak_memory(model, cfg, resolved_ds("zero2.json", cfg, 1, on_gpu=False), dims(cfg, 1, 1), 0.0)
    assert fp32.parameter_bytes == 2 * bf16.parameter_bytes and fp32.gradient_bytes == 2 * bf16.gradient_bytes
    # ZeRO-1/2 update a fp32 clone of the partition whatever the model's dtype
    assert fp32.optimizer_bytes == bf16.optimizer_bytes == 12 * trainable
    plain = resolve_ds_config({"zero_optimization": {"stage": 0}}, cfg, dims(cfg, 1), False, True)
    assert estimate_peak_memory(model, cfg, plain, dims(cfg, 1, 1), 0.0).optimizer_bytes == 8 * trainable  # AdamW's m, v


# The weights tensor parallelism splits in each ViT block (column-parallel q/k/v and fc1 with their biases,
# row-parallel out_proj and fc2 without theirs), named as in the tp_size 1 model.
TP_SPLIT_SUFFIXES = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "mlp.c_fc.weight",
                     "mlp.c_fc.bias", "mlp.c_proj.weight")


def _tp_split(model):
    return {n: p for n, p in model.named_parameters() if n.startswith("backbone.") and n.endswith(TP_SPLIT_SUFFIXES)}


@pytest.mark.parametrize("name, stage", [("zero1.json", 1), ("zero2.json", 2)])
def test_tensor_parallelism_splits_the_block_weights_and_zero_partitions_over_data_parallel_ranks(name, stage):
    world, tp, ep = 8, 2, 2
    cfg = tiny_cfg(f"parallel.tp_size={tp}", f"parallel.ep_size={ep}")
    model = tiny_model(cfg)
    dp = world // tp  # 4 data-parallel ranks; the experts' share over dp / ep = 2 replicas
    ds = resolved_ds(name, cfg, dp)
    est = estimate_peak_memory(model, cfg, ds, dims(cfg, dp, ep), activation_bytes_per_frame=0.0)
    n = _by_hand(model, ep)
    split = sum(p.numel() for p in _tp_split(model).values())
    assert len(_tp_split(model)) == 6 * len(model.backbone.visual.transformer.resblocks) and split > 0
    dense_rank = n["dense"] - split + split // tp  # the head, LayerNorms, patch embedding: whole on every TP rank
    assert est.parameter_bytes == 2 * (dense_rank + n["expert"])
    grads = (math.ceil(dense_rank / dp) + math.ceil(n["expert_tr"] / (dp // ep)) if stage == 2
             else dense_rank + n["expert_tr"])
    assert est.gradient_bytes == 2 * grads
    assert est.optimizer_bytes == 12 * (math.ceil(dense_rank / dp) + math.ceil(n["expert_tr"] / (dp // ep)))
    assert (est.dims.world_size, est.dims.tp_size, est.dims.dp_size) == (world, tp, dp)
    assert "world size 8, tp_size 2, data-parallel 4" in est.format()


def test_a_model_already_tensor_parallel_counts_its_shards_once():
    cfg = tiny_cfg("parallel.tp_size=2")
    ds = resolved_ds("zero2.json", cfg, 2)
    whole = estimate_peak_memory(tiny_model(cfg), cfg, ds, dims(cfg, 2, 1), 0.0)
    sharded = tiny_model(cfg)
    for parameter in _tp_split(sharded).values():
        # what apply_tensor_parallel leaves: the local shard, marked as megatron-core marks it
        with torch.no_grad():
            parameter.data = parameter.data.narrow(0, 0, parameter.shape[0] // 2).clone()
        parameter.tensor_model_parallel = True
    assert estimate_peak_memory(sharded, cfg, ds, dims(cfg, 2, 1), 0.0) == whole
