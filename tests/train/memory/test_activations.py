"""Activations measured on the model (vidprism_ds.train.memory.activations): exact saved storages,
dtype scaling, gradient checkpointing, tensor parallelism, shallow towers."""

import pytest
import torch
from torch import nn

from tests.train.memory.common import tiny_cfg, tiny_model
from vidprism_ds.config import load_config
from vidprism_ds.model.video_model import build_video_model
from vidprism_ds.train.memory.activations import (
    ActivationProfile,
    measure_activation_bytes_per_frame,
    measure_activations,
    measure_shallow_activations,
)


def test_tensor_parallelism_divides_the_blocks_inner_activations_only():
    cfg = tiny_cfg()
    model = tiny_model(cfg)
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
    ckpt = measure_activations(tiny_model(tiny_cfg("model.backbone.grad_checkpointing=true")), 32, 8, "cpu",
                               torch.float32, tp_size=2)
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
    full = measure_activations(tiny_model(cfg), 64, 8, "cpu", torch.bfloat16)
    shallow = measure_shallow_activations(cfg, torch.bfloat16, checkpointed=bool(overrides))
    assert shallow.saved_per_frame == pytest.approx(full.saved_per_frame, rel=1e-9)
    assert (shallow.block_per_frame, shallow.full_blocks) == (full.block_per_frame, full.full_blocks)
    assert shallow.per_frame == pytest.approx(full.per_frame, rel=1e-9)


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
    cfg = tiny_cfg()
    plain = measure_activations(tiny_model(cfg), 32, 8, "cpu", torch.float32)
    ckpt_cfg = tiny_cfg("model.backbone.grad_checkpointing=true")
    ckpt_model = tiny_model(ckpt_cfg)
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
    model = tiny_model(tiny_cfg())
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
    # what the head keeps once a step (mostly the stacked expert weights its batched computation saves,
    # plus constants sized by the clip) hardly depends on the clip
    assert eight.head_per_step == pytest.approx(four.head_per_step, rel=0.01) and four.head_per_step > 0


def test_fp32_measurement_scaled_to_bf16_matches_a_bf16_run():
    model = tiny_model(tiny_cfg())
    scaled = measure_activation_bytes_per_frame(model, 32, 8, "cpu", torch.bfloat16)
    direct = measure_activation_bytes_per_frame(model.to(torch.bfloat16), 32, 8, "cpu", torch.bfloat16)
    fp32 = measure_activation_bytes_per_frame(model.float(), 32, 8, "cpu", torch.float32)
    assert scaled == pytest.approx(direct, rel=0.03)
    assert scaled < 0.6 * fp32  # not simply the fp32 figure


def test_measurement_leaves_the_model_and_rng_as_they_were():
    model = tiny_model(tiny_cfg("model.backbone.grad_checkpointing=true"))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    measure_activation_bytes_per_frame(model, 32, 8, "cpu", torch.bfloat16)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any(m.training for m in model.modules())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_frozen_backbone_keeps_no_backbone_activations():
    frozen = measure_activations(tiny_model(tiny_cfg("model.backbone.freeze=all")), 32, 8, "cpu", torch.float32)
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
