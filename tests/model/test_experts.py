import torch

from vidprism_ds.model.experts import TemporalExpert
from vidprism_ds.model.readout import AttentionReadout


def test_expert_is_post_norm_transformer_layer():
    torch.manual_seed(0)
    expert = TemporalExpert(32, num_heads=4, ffn_mult=2)
    x_nld = torch.randn(3, 7, 32)
    h = expert.ln_1(x_nld + expert.attn(x_nld, x_nld, x_nld, need_weights=False)[0])
    ffn = expert.ffn[2](expert.ffn[0](h) * torch.sigmoid(1.702 * expert.ffn[0](h)))  # QuickGELU
    expected = expert.ln_2(h + ffn)
    torch.testing.assert_close(expert(x_nld), expected, atol=1e-5, rtol=1e-5)
    assert expert.ffn[0].out_features == 64


def test_readout_equals_multihead_attention_with_one_query():
    torch.manual_seed(1)
    readout = AttentionReadout(32, num_heads=4)
    with torch.no_grad():
        readout.attn.in_proj_bias.normal_()  # a key bias must cancel, a value bias must not
    outputs = [torch.randn(5, n, 32) for n in (16, 8, 4, 2)]
    kv = torch.cat(outputs, dim=1)
    pooled, attn_b1l = readout.attn(readout.global_query.expand(5, 1, 32), kv, kv, need_weights=True)
    fused, weights = readout(outputs)
    torch.testing.assert_close(fused, readout.ln(pooled[:, 0]), atol=1e-5, rtol=1e-5)
    expected_weights = torch.stack([a.sum(-1) for a in attn_b1l[:, 0].split([16, 8, 4, 2], dim=-1)], dim=-1)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_batched_experts_equal_each_expert_alone():
    """All experts in one padded, batched computation (LocalDispatcher's path) against one by one:
    outputs and every parameter gradient, streams of different lengths, with and without positions."""
    from vidprism_ds.model.batched_experts import batched_experts_forward, can_batch

    for max_positions in (0, 16):
        torch.manual_seed(max_positions)
        experts = [TemporalExpert(32, num_heads=4, max_positions=max_positions) for _ in range(4)]
        inputs = [torch.randn(3, n, 32) for n in (16, 8, 4, 1)]
        assert can_batch(experts, inputs)
        batched = batched_experts_forward(experts, inputs)
        sum(o.pow(2).sum() for o in batched).backward()
        batched_grads = [p.grad.clone() for e in experts for p in e.parameters()]
        for e in experts:
            e.zero_grad()
        alone = [e(x) for e, x in zip(experts, inputs)]
        sum(o.pow(2).sum() for o in alone).backward()
        for b, a in zip(batched, alone):
            torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
        for b, a in zip(batched_grads, [p.grad for e in experts for p in e.parameters()]):
            torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-5)
