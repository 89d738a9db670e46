"""The peak-memory estimate (vidprism_ds.train.memory): measured activations, ZeRO arithmetic, the check."""

import argparse
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.model.video_model import build_video_model
from vidprism_ds.parallel import ParallelContext, parallelize_model
from vidprism_ds.train.batch import plan_batch
from vidprism_ds.train.ds_config import read_ds_config, resolve_ds_config
from vidprism_ds.train.memory import (
    GIB,
    WORKSPACE_BYTES,
    ActivationProfile,
    MemoryEstimate,
    check_fits,
    estimate_for_config,
    estimate_peak_memory,
    load_estimate_config,
    main,
    measure_activation_bytes_per_frame,
    measure_activations,
    measure_shallow_activations,
    micro_batch_for_world,
    report_and_check,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["model.backbone.arch=tiny", "model.backbone.image_size=32", "data.image_size=32", "data.num_frames=8",
        "train.micro_batch=2", "train.grad_accum=3"]


def _cfg(*overrides):
    return load_config(None, TINY + list(overrides))


def _model(cfg):
    return build_video_model(cfg.model, 5, cfg.data.num_frames, seed=0).model


def _ds(name, cfg, world_size, on_gpu=True):
    return resolve_ds_config(read_ds_config(f"ds_configs/{name}"), cfg, world_size, on_gpu, has_experts=True)


# --------------------------------------------------------------------------------------------------
# parameters, gradients, optimizer state
# --------------------------------------------------------------------------------------------------


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
    cfg = _cfg("model.backbone.freeze=partial", "model.backbone.trainable_blocks=1", f"parallel.ep_size={ep_size}")
    model = _model(cfg)
    ds = _ds(name, cfg, world) if name else resolve_ds_config({"zero_optimization": {"stage": 0}}, cfg, world,
                                                              True, True)
    est = estimate_peak_memory(model, cfg, ds, world, ep_size, activation_bytes_per_frame=1000.0)
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
    cfg = _cfg()
    model = _model(cfg)
    ds = _ds("zero2.json", cfg, 4)
    one = estimate_peak_memory(model, cfg, ds, 4, 1, 0.0)
    two = estimate_peak_memory(model, cfg, ds, 4, 2, 0.0)
    expert_elements = sum(p.numel() for p in model.head.experts.parameters())
    assert one.parameter_bytes - two.parameter_bytes == 2 * expert_elements // 2
    # ZeRO-2 over 4 ranks vs, for the experts, over their 2 replicas: half the experts, twice the share each
    assert two.gradient_bytes == one.gradient_bytes
    assert two.optimizer_bytes == one.optimizer_bytes


def test_a_sharded_model_gives_the_same_estimate_as_the_planned_placement():
    cfg = _cfg("parallel.ep_size=2")
    ds = _ds("zero2.json", cfg, 4)
    planned = estimate_peak_memory(_model(cfg), cfg, ds, 4, 2, 0.0)
    sharded = _model(cfg)
    ctx = ParallelContext(world_size=4, rank=0, ep_size=2, ep_rank=0, ep_group=None, expert_data_group=None)
    parallelize_model(sharded, ctx)  # keeps rank 0's experts, tagged for DeepSpeed (is_moe_param)
    assert estimate_peak_memory(sharded, cfg, ds, 4, 2, 0.0) == planned


def test_offload_moves_the_optimizer_state_off_the_gpu():
    cfg = _cfg()
    model = _model(cfg)
    on_gpu = estimate_peak_memory(model, cfg, _ds("zero2.json", cfg, 2), 2, 1, 0.0)
    offload = estimate_peak_memory(model, cfg, _ds("zero2_offload.json", cfg, 2), 2, 1, 0.0)
    assert on_gpu.optimizer_bytes > 0 and offload.optimizer_bytes == 0
    assert offload.gradient_bytes == on_gpu.gradient_bytes


def test_fp32_training_has_a_master_copy_only_under_zero():
    cfg = _cfg()
    model = _model(cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bf16 = estimate_peak_memory(model, cfg, _ds("zero2.json", cfg, 1), 1, 1, 0.0)
    fp32 = estimate_peak_memory(model, cfg, _ds("zero2.json", cfg, 1, on_gpu=False), 1, 1, 0.0)
    assert fp32.parameter_bytes == 2 * bf16.parameter_bytes and fp32.gradient_bytes == 2 * bf16.gradient_bytes
    # ZeRO-1/2 update a fp32 clone of the partition whatever the model's dtype
    assert fp32.optimizer_bytes == bf16.optimizer_bytes == 12 * trainable
    plain = resolve_ds_config({"zero_optimization": {"stage": 0}}, cfg, 1, False, True)
    assert estimate_peak_memory(model, cfg, plain, 1, 1, 0.0).optimizer_bytes == 8 * trainable  # AdamW's m, v


# The weights tensor parallelism splits in each ViT block (column-parallel q/k/v and fc1 with their biases,
# row-parallel out_proj and fc2 without theirs), named as in the tp_size 1 model.
TP_SPLIT_SUFFIXES = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "mlp.c_fc.weight",
                     "mlp.c_fc.bias", "mlp.c_proj.weight")


def _tp_split(model):
    return {n: p for n, p in model.named_parameters() if n.startswith("backbone.") and n.endswith(TP_SPLIT_SUFFIXES)}


@pytest.mark.parametrize("name, stage", [("zero1.json", 1), ("zero2.json", 2)])
def test_tensor_parallelism_splits_the_block_weights_and_zero_partitions_over_data_parallel_ranks(name, stage):
    world, tp, ep = 8, 2, 2
    cfg = _cfg(f"parallel.tp_size={tp}", f"parallel.ep_size={ep}")
    model = _model(cfg)
    dp = world // tp  # 4 data-parallel ranks; the experts' share over dp / ep = 2 replicas
    ds = _ds(name, cfg, dp)
    est = estimate_peak_memory(model, cfg, ds, dp, ep, activation_bytes_per_frame=0.0)
    n = _by_hand(model, ep)
    split = sum(p.numel() for p in _tp_split(model).values())
    assert len(_tp_split(model)) == 6 * len(model.backbone.visual.transformer.resblocks) and split > 0
    dense_rank = n["dense"] - split + split // tp  # the head, LayerNorms, patch embedding: whole on every TP rank
    assert est.parameter_bytes == 2 * (dense_rank + n["expert"])
    grads = (math.ceil(dense_rank / dp) + math.ceil(n["expert_tr"] / (dp // ep)) if stage == 2
             else dense_rank + n["expert_tr"])
    assert est.gradient_bytes == 2 * grads
    assert est.optimizer_bytes == 12 * (math.ceil(dense_rank / dp) + math.ceil(n["expert_tr"] / (dp // ep)))
    assert (est.world_size, est.tp_size, est.data_parallel_size) == (world, tp, dp)
    assert "world size 8, tp_size 2, data-parallel 4" in est.format()


def test_a_model_already_tensor_parallel_counts_its_shards_once():
    cfg = _cfg("parallel.tp_size=2")
    ds = _ds("zero2.json", cfg, 2)
    whole = estimate_peak_memory(_model(cfg), cfg, ds, 2, 1, 0.0)
    sharded = _model(cfg)
    for parameter in _tp_split(sharded).values():
        # what apply_tensor_parallel leaves: the local shard, marked as megatron-core marks it
        with torch.no_grad():
            parameter.data = parameter.data.narrow(0, 0, parameter.shape[0] // 2).clone()
        parameter.tensor_model_parallel = True
    assert estimate_peak_memory(sharded, cfg, ds, 2, 1, 0.0) == whole


def test_tensor_parallelism_divides_the_blocks_inner_activations_only():
    cfg = _cfg()
    model = _model(cfg)
    one = measure_activations(model, 32, 8, "cpu", torch.float32)
    two = measure_activations(model, 32, 8, "cpu", torch.float32, tp_size=2)
    # what every TP rank keeps whole: ln_1's output, ln_2's input and output (5 tokens x 64 wide, fp32 here)
    # and the two LayerNorms' fp32 mean and rstd per token
    tokens, width = (32 // 16) ** 2 + 1, 64
    assert one.block_replicated_per_frame == 3 * tokens * width * 4 + tokens * 2 * 2 * 4
    sharded = one.block_per_frame - one.block_replicated_per_frame
    assert sharded > one.block_replicated_per_frame  # q/k/v, attention and the 4x-wide MLP dominate a block
    assert two.block_per_rank == one.block_replicated_per_frame + sharded / 2
    assert one.full_blocks == 2  # both blocks keep all their activations without checkpointing
    assert two.saved_per_rank == pytest.approx(one.saved_per_frame - 2 * sharded / 2)
    assert two.head_per_frame == one.head_per_frame  # the head is replicated over the TP group
    # with checkpointing only block inputs are saved: TP divides the recomputed block, not the checkpoints
    ckpt = measure_activations(_model(_cfg("model.backbone.grad_checkpointing=true")), 32, 8, "cpu", torch.float32,
                               tp_size=2)
    assert ckpt.full_blocks == 0 and ckpt.saved_per_rank == ckpt.saved_per_frame
    assert ckpt.working_per_frame == pytest.approx(1.5 * two.block_per_rank)


def test_a_profile_divides_as_documented():
    profile = ActivationProfile(saved_per_frame=1000.0, block_per_frame=300.0, checkpointed=False, head_per_frame=7.0,
                                block_replicated_per_frame=100.0, full_blocks=3, tp_size=4)
    assert profile.block_per_rank == 100 + 200 / 4
    assert profile.saved_per_rank == 1000 - 3 * 150
    assert profile.per_frame == 1000 - 450 + 0.5 * 150 + 7


@pytest.mark.parametrize("overrides", [(), ("model.backbone.freeze=partial", "model.backbone.trainable_blocks=3",
                                            "model.backbone.grad_checkpointing=true")])
def test_shallow_towers_measure_what_the_full_tower_does(overrides):
    # ViT-B/32 at 64 px: 12 blocks of 5 tokens, cheap to build whole and compare
    cfg = load_config(None, ["model.backbone.arch=ViT-B-32", "model.backbone.image_size=64", "data.image_size=64",
                             "data.num_frames=8", "model.num_classes=5", *overrides])
    full = measure_activations(_model(cfg), 64, 8, "cpu", torch.bfloat16)
    shallow = measure_shallow_activations(cfg, torch.bfloat16)
    assert shallow.saved_per_frame == pytest.approx(full.saved_per_frame, rel=1e-9)
    assert (shallow.block_per_frame, shallow.full_blocks) == (full.block_per_frame, full.full_blocks)
    assert shallow.per_frame == pytest.approx(full.per_frame, rel=1e-9)


def test_the_cli_fits_the_micro_batch_to_the_global_batch_per_world_size():
    cfg = _cfg("train.global_batch=128", "train.micro_batch=32", "train.grad_accum=1", "parallel.tp_size=2")
    assert micro_batch_for_world(cfg, 8) is cfg  # 4 data-parallel ranks x 32 = 128
    assert micro_batch_for_world(cfg, 32).train.micro_batch == 8  # 16 ranks: 8 clips each
    assert micro_batch_for_world(cfg, 128).train.micro_batch == 2
    assert micro_batch_for_world(_cfg("train.global_batch=128", "train.micro_batch=24", "train.grad_accum=1"),
                                 4).train.micro_batch == 16  # 32 clips a rank: the largest divisor up to 24


def test_zero_buckets_are_part_of_the_workspace():
    cfg = _cfg()
    ds = _ds("zero2.json", cfg, 2)  # overlap_comm: two reduce buckets of 5e7 bf16 elements
    est = estimate_peak_memory(_model(cfg), cfg, ds, 2, 1, 0.0)
    assert est.workspace_bytes == WORKSPACE_BYTES + 2 * 50_000_000 * 2


# --------------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------------


class _PixelEncoder(nn.Module):
    """A backbone whose saved tensors are known: one Linear on the flattened frames saves its input."""

    embed_dim = 6

    def __init__(self, image_size):
        super().__init__()
        self.linear = nn.Linear(3 * image_size * image_size, self.embed_dim)

    def forward(self, clips_btchw):
        b, t = clips_btchw.shape[:2]
        return self.linear(clips_btchw.reshape(b, t, -1))  # a view: the clip's storage, counted once


class _KnownModel(nn.Module):
    def __init__(self, image_size, head=None):
        super().__init__()
        self.backbone = _PixelEncoder(image_size)
        self.head = head or nn.Linear(_PixelEncoder.embed_dim, 4)  # saves its (1, T, 6) input


def test_measurement_counts_exactly_the_saved_storages():
    model = _KnownModel(image_size=8)
    per_frame = measure_activation_bytes_per_frame(model, 8, num_frames=5, device="cpu", dtype=torch.float32)
    assert per_frame == 3 * 8 * 8 * 4 + 6 * 4  # the frame (saved by the Linear) + its embedding (by the head)
    # a fp32 model measured for bf16 training: every saved tensor is in the compute dtype, all halve
    assert measure_activation_bytes_per_frame(model, 8, 5, "cpu", torch.bfloat16) == per_frame / 2


def test_fp32_statistics_keep_their_bytes_when_scaled_to_bf16():
    # LayerNorm saves its input (bf16 in training) and its mean and rstd (fp32 under bf16 on CUDA)
    model = _KnownModel(image_size=8, head=nn.LayerNorm(_PixelEncoder.embed_dim))
    frame = 3 * 8 * 8
    assert measure_activation_bytes_per_frame(model, 8, 5, "cpu", torch.float32) == 4 * frame + 4 * 6 + 4 + 4
    assert measure_activation_bytes_per_frame(model, 8, 5, "cpu", torch.bfloat16) == 2 * frame + 2 * 6 + 4 + 4


def test_gradient_checkpointing_keeps_block_inputs_and_adds_one_block():
    cfg = _cfg()
    plain = measure_activations(_model(cfg), 32, 8, "cpu", torch.float32)
    ckpt_cfg = _cfg("model.backbone.grad_checkpointing=true")
    ckpt_model = _model(ckpt_cfg)
    assert ckpt_model.backbone.visual.transformer.grad_checkpointing
    ckpt = measure_activations(ckpt_model, 32, 8, "cpu", torch.float32)
    assert ckpt.per_frame < 0.8 * plain.per_frame
    assert ckpt.block_per_frame == plain.block_per_frame > 0
    # the backward pass holds the recomputed block on top of the gradients both have in flight
    assert ckpt.working_per_frame - plain.working_per_frame == ckpt.block_per_frame
    # Without checkpointing each block keeps its input plus what the block computes; with it only the
    # input (held by the checkpoint for the recompute): the difference is one block's worth per block.
    blocks = len(ckpt_model.backbone.visual.transformer.resblocks)
    assert plain.saved_per_frame - ckpt.saved_per_frame == pytest.approx(blocks * plain.block_per_frame, rel=1e-3)


def test_measured_bytes_grow_linearly_with_frames():
    model = _model(_cfg())
    four = measure_activations(model, 32, 4, "cpu", torch.float32, backbone_frames=4)
    eight = measure_activations(model, 32, 8, "cpu", torch.float32, backbone_frames=8)
    # the backbone's share is exactly linear (frames are independent images) ...
    assert (eight.saved_per_frame, eight.block_per_frame) == (four.saved_per_frame, four.block_per_frame)
    # ... so a 2-frame measurement of it is exact
    two = measure_activations(model, 32, 8, "cpu", torch.float32)
    assert (two.saved_per_frame, two.block_per_frame) == (eight.saved_per_frame, eight.block_per_frame)
    # the head has a per-clip part (4 experts, whatever the length): a clip of twice the frames keeps a
    # little less than twice the bytes (the tiny backbone makes the head's share unusually large here)
    assert 1.8 < (eight.per_frame * 8) / (four.per_frame * 4) <= 2.0


def test_fp32_measurement_scaled_to_bf16_matches_a_bf16_run():
    model = _model(_cfg())
    scaled = measure_activation_bytes_per_frame(model, 32, 8, "cpu", torch.bfloat16)
    direct = measure_activation_bytes_per_frame(model.to(torch.bfloat16), 32, 8, "cpu", torch.bfloat16)
    fp32 = measure_activation_bytes_per_frame(model.float(), 32, 8, "cpu", torch.float32)
    assert scaled == pytest.approx(direct, rel=0.03)
    assert scaled < 0.6 * fp32  # not simply the fp32 figure


def test_measurement_leaves_the_model_and_rng_as_they_were():
    model = _model(_cfg("model.backbone.grad_checkpointing=true"))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    measure_activation_bytes_per_frame(model, 32, 8, "cpu", torch.bfloat16)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any(m.training for m in model.modules())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_frozen_backbone_keeps_no_backbone_activations():
    frozen = measure_activations(_model(_cfg("model.backbone.freeze=all")), 32, 8, "cpu", torch.float32)
    assert frozen.saved_per_frame == 3 * 32 * 32 * 4  # only the input clip
    assert frozen.block_per_frame == 0 and frozen.working_per_frame == 0 and frozen.head_per_frame > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares with the CUDA caching allocator's peak")
@pytest.mark.parametrize("checkpointing", [False, True])
def test_on_cuda_the_measured_activations_bound_the_allocator_peak(checkpointing):
    cfg = load_config(None, ["model.backbone.arch=ViT-B-16", "data.num_frames=8",
                             f"model.backbone.grad_checkpointing={str(checkpointing).lower()}"])
    model = build_video_model(cfg.model, 400, 8).model.cuda().to(torch.bfloat16)  # as DeepSpeed casts it
    clips = 8
    predicted = measure_activation_bytes_per_frame(model, 224, 8, "cuda", torch.bfloat16) * clips * 8
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    weights = torch.cuda.memory_allocated()
    out = model(torch.randn(clips, 8, 3, 224, 224, device="cuda", dtype=torch.bfloat16))
    (out.logits.float().logsumexp(-1).mean() + out.balance_loss.float()).backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    real = torch.cuda.max_memory_allocated() - weights - grads
    # A bound, not a loose one. torch's checkpoint frees recomputed tensors as backward uses them, so
    # with checkpointing small batches peak lower (H200: 0.68 of the estimate at 32 frames, 0.93 at 1024).
    assert 0.6 * predicted < real <= predicted


# --------------------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------------------


def _estimate(**fields):
    base = dict(parameter_bytes=GIB, gradient_bytes=GIB, optimizer_bytes=2 * GIB, activation_bytes=76 * GIB,
                workspace_bytes=2 * GIB, parameters_on_rank=10 ** 8, activation_bytes_per_frame=76 * GIB / 1024,
                micro_batch=32, grad_accum=1, num_frames=32, grad_checkpointing=False, dtype_name="bfloat16",
                zero_stage=2, offload_optimizer=False, world_size=2, ep_size=1)
    return MemoryEstimate(**{**base, **fields})


def test_check_fits_names_gradient_checkpointing_when_it_is_off():
    over = r"82\.00 GiB .* 76\.00 GiB.*model\.backbone\.grad_checkpointing=true"
    with pytest.raises(ConfigError, match=over) as err:
        check_fits(_estimate(), 80 * GIB, 0.95)
    message = str(err.value)
    assert "\n" not in message
    # a micro-batch that fits and keeps micro_batch x grad_accum = 32
    assert "train.micro_batch=16 train.grad_accum=2" in message
    assert "zero2_offload" not in message  # 2 GiB of optimizer state cannot close a 6 GiB gap


def test_with_a_global_batch_the_remedy_names_the_micro_batch_only():
    with pytest.raises(ConfigError) as err:
        check_fits(_estimate(grad_accum=2, global_batch_fixed=True), 80 * GIB, 0.95)
    # 64 clips a rank a step whatever the micro-batch: the accumulation follows from train.global_batch
    assert "train.micro_batch=16; train.grad_accum follows from train.global_batch" in str(err.value)
    assert "raise train.grad_accum" not in str(err.value)


def test_the_estimate_records_the_accumulation_derived_for_its_world_size():
    cfg = _cfg("train.grad_accum=1", "train.global_batch=16")
    for world_size, accum in ((1, 8), (2, 4)):
        estimate = estimate_peak_memory(_model(cfg), cfg, _ds("zero2.json", cfg, world_size), world_size, 1, 1000.0)
        assert (estimate.grad_accum, estimate.global_batch_fixed) == (accum, True)


def test_check_fits_with_checkpointing_on_points_elsewhere():
    with pytest.raises(ConfigError) as err:
        check_fits(_estimate(grad_checkpointing=True, activation_bytes=70 * GIB, optimizer_bytes=8 * GIB),
                   80 * GIB, 0.95)
    assert "grad_checkpointing" not in str(err.value)
    assert "ds_configs/zero2_offload.json" in str(err.value)  # 8 GiB of optimizer state would close the gap


def test_check_fits_says_what_is_left_when_no_knob_helps():
    with pytest.raises(ConfigError, match=r"data\.num_frames"):
        check_fits(_estimate(grad_checkpointing=True, micro_batch=1, activation_bytes=90 * GIB,
                             activation_bytes_per_frame=90 * GIB / 32), 80 * GIB, 0.95)


def test_check_fits_passes_under_the_limit_and_is_off_at_fraction_zero():
    check_fits(_estimate(activation_bytes=10 * GIB), 80 * GIB, 0.95)
    check_fits(_estimate(), 80 * GIB, 0.0)
    with pytest.raises(ConfigError):
        check_fits(_estimate(activation_bytes=10 * GIB), 16 * GIB, 0.95)


def test_report_and_check_on_cpu_estimates_and_logs_without_a_limit():
    cfg = _cfg("train.micro_batch=4000")  # far too much for any GPU; on a CPU there is nothing to compare
    model = _model(cfg)
    lines = []
    est = report_and_check(model, cfg, _ds("zero2.json", cfg, 1, on_gpu=False), 1, 1, "cpu", torch.float32,
                           log=lines.append)
    assert est.activation_bytes == int(est.activation_bytes_per_frame * 4000 * 8)
    assert lines and lines[0].startswith("estimated peak GPU memory per rank")
    assert "activations" in lines[0] and "gradient checkpointing off" in lines[0]


# --------------------------------------------------------------------------------------------------
# the presets
# --------------------------------------------------------------------------------------------------

# ViT-H/14 and ViT-bigG/14: no official recipe, sized for one 8-GPU node; their towers are never built whole
GIANT_PRESETS = ("k400_vith14", "k400_vitbigg14")
GPU_PRESETS = sorted(p for p in CONFIGS.glob("*.yaml")
                     if load_config(p).model.backbone.arch != "tiny" and p.stem not in GIANT_PRESETS)
# the official launch: 2 GPUs; global batch 64 (ViT-B/16 recipes), 128 (ViT-L/14: 32 x 2 accumulation x 2)
OFFICIAL_GPUS = 2
OFFICIAL_GLOBAL_BATCH = {"k400_vitl14": 128}
OFFICIAL_GRAD_ACCUM = {"k400_vitl14": 2}


def _preset(path, *overrides):
    """As the CLI loads it: the preset at random init (no weights file needed)."""
    return load_estimate_config(argparse.Namespace(config=str(path), overrides=list(overrides)))


@pytest.mark.slow
def test_every_gpu_preset_fits_an_80_gib_gpu_at_the_official_global_batch():
    models, per_frame = {}, {}
    for path in GPU_PRESETS:
        cfg = _preset(path)
        # the recipe's global batch, which on the official 2 GPUs is the official per-GPU batch and accumulation
        assert cfg.train.global_batch == OFFICIAL_GLOBAL_BATCH.get(path.stem, 64)
        official = plan_batch(cfg.train, OFFICIAL_GPUS)
        assert (official.micro_batch, official.grad_accum) == (32, OFFICIAL_GRAD_ACCUM.get(path.stem, 1))
        arch = cfg.model.backbone.arch
        if arch not in models:  # one build per arch: the classifier's row count is all that differs (710 rows)
            models[arch] = build_video_model(cfg.model, 710, cfg.data.num_frames, seed=0).model
        model = models[arch]
        model.backbone.set_grad_checkpointing(cfg.model.backbone.grad_checkpointing)
        key = (arch, cfg.model.backbone.grad_checkpointing, cfg.model.backbone.image_size, cfg.data.num_frames)
        if key not in per_frame:
            # one frame through the backbone: its per-frame figure is exact at any count (see above)
            per_frame[key] = measure_activation_bytes_per_frame(model, key[2], key[3], "cpu", torch.bfloat16,
                                                                backbone_frames=1)
        # one GPU: nothing partitioned, the most memory any rank of a larger run needs
        ds = _ds("zero2.json", cfg, 1)
        estimate = estimate_peak_memory(model, cfg, ds, 1, cfg.parallel.ep_size, per_frame[key])
        check_fits(estimate, 80 * GIB, cfg.train.memory_limit_fraction or 0.95)
        assert estimate.grad_checkpointing
    # why the ViT-B/16 presets deviate: without checkpointing their 32 x 32-frame micro-batch does not fit
    b16 = next(p for p in GPU_PRESETS if p.stem == "k400_vitb16")
    cfg = _preset(b16, "model.backbone.grad_checkpointing=false")
    models["ViT-B-16"].backbone.set_grad_checkpointing(False)
    no_ckpt = measure_activation_bytes_per_frame(models["ViT-B-16"], 224, 32, "cpu", torch.bfloat16,
                                                 backbone_frames=1)
    estimate = estimate_peak_memory(models["ViT-B-16"], cfg, _ds("zero2.json", cfg, 1), 1, 1, no_ckpt)
    with pytest.raises(ConfigError, match="grad_checkpointing"):
        check_fits(estimate, 80 * GIB, 0.95)
    assert estimate.activation_bytes > 70 * GIB


@pytest.mark.slow
@pytest.mark.parametrize("stem, total_gib", [("k400_vith14", 23.88), ("k400_vitbigg14", 41.32)])
def test_the_giant_presets_fit_an_80_gib_gpu_on_one_node(stem, total_gib):
    cfg = _preset(CONFIGS / f"{stem}.yaml")
    estimate = estimate_for_config(cfg, read_ds_config("ds_configs/zero2.json"), 8)
    check_fits(estimate, 80 * GIB, cfg.train.memory_limit_fraction or 0.95)
    assert estimate.grad_checkpointing and (estimate.micro_batch, estimate.grad_accum) == (16, 1)
    assert round(estimate.total_bytes / GIB, 2) == total_gib  # the figure the preset's comment quotes


def test_the_cli_prints_one_row_per_world_size(capsys):
    # the embedded demo (tiny tower, 2 heads) split over TP groups of 2
    assert main(["--set", "parallel.tp_size=2", "--world-size", "2", "4", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| demo")]
    assert [row.split(" | ")[1:5] for row in rows] == [["2", "2", "1", "2"], ["4", "2", "2", "2"]]
    assert all(row.endswith("| yes |") for row in rows)
    assert main(["--set", "parallel.tp_size=2", "--world-size", "3"]) == 2  # tp_size does not divide 3
