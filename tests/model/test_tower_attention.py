"""The tower's packed-QKV SDPA attention (vidprism_ds.model.tower_attention) against nn.MultiheadAttention."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vidprism_ds.config.schema import BackboneConfig
from vidprism_ds.model.backbone import FrameEncoder, build_clip, transformer_blocks
from vidprism_ds.model.tower_attention import PackedSelfAttention, use_packed_attention
from vidprism_ds.utils.op_count import count_fwd_bwd_ops

IMAGE = 32


@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_attention_computes_what_multihead_attention_does(batch_first):
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(64, 4, batch_first=batch_first)
    packed = PackedSelfAttention(copy.deepcopy(reference))
    shape = (3, 17, 64) if batch_first else (17, 3, 64)
    x_ref = torch.randn(shape, requires_grad=True)
    x_new = x_ref.detach().clone().requires_grad_(True)
    out_ref = reference(x_ref, x_ref, x_ref, need_weights=False)[0]
    out_new, weights = packed(x_new, x_new, x_new, need_weights=False)
    assert weights is None
    torch.testing.assert_close(out_new, out_ref, rtol=0, atol=1e-6)
    grad_out = torch.randn(shape)
    out_ref.backward(grad_out)
    out_new.backward(grad_out)
    torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=0, atol=1e-6)
    for name, param in packed.named_parameters():
        torch.testing.assert_close(param.grad, reference.get_parameter(name).grad, rtol=0, atol=1e-5)


def test_the_packed_attention_keeps_the_parameters_their_names_and_objects():
    attn = nn.MultiheadAttention(64, 4, batch_first=True)
    packed = PackedSelfAttention(attn)
    assert packed.state_dict().keys() == attn.state_dict().keys()
    assert all(a is b for a, b in zip(packed.parameters(), attn.parameters()))
    assert (packed.num_heads, packed.head_dim, packed.batch_first) == (4, 16, True)


def test_it_refuses_what_it_does_not_compute():
    packed = PackedSelfAttention(nn.MultiheadAttention(64, 4, batch_first=True))
    x, other = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    with pytest.raises(ValueError, match="self-attention"):
        packed(x, other, other)
    with pytest.raises(ValueError, match="boolean"):
        packed(x, attn_mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="dropout"):
        PackedSelfAttention(nn.MultiheadAttention(64, 4, dropout=0.1))


def test_the_tower_with_packed_attention_matches_open_clips_and_loads_the_same_weights():
    cfg = BackboneConfig(arch="tiny", image_size=IMAGE, grad_checkpointing="none")
    open_clip_tower = FrameEncoder(build_clip(cfg, seed=1).visual, packed_attention=False)
    packed_tower = FrameEncoder(build_clip(cfg, seed=1).visual)
    assert all(isinstance(b.module.attn, PackedSelfAttention) for b in transformer_blocks(packed_tower))
    assert all(type(b.module.attn) is nn.MultiheadAttention for b in transformer_blocks(open_clip_tower))
    assert packed_tower.state_dict().keys() == open_clip_tower.state_dict().keys()
    packed_tower.load_state_dict(open_clip_tower.state_dict())
    clips = torch.randn(2, 3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
    outs, grads = [], []
    for tower in (open_clip_tower, packed_tower):
        out = tower(clips)
        out.square().sum().backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in tower.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-5)
    # the point of it: fewer operators (copies and transposes) per block in training
    ops = [count_fwd_bwd_ops(lambda t=tower: t(clips).sum()) for tower in (open_clip_tower, packed_tower)]
    assert ops[1].total < ops[0].total


def test_use_packed_attention_converts_once():
    blocks = [b.module for b in transformer_blocks(build_clip(BackboneConfig(arch="tiny", image_size=IMAGE)).visual)]
    # build_clip returns open_clip's tower (FrameEncoder converts it)
    assert use_packed_attention(blocks) == len(blocks) and use_packed_attention(blocks) == 0
