"""Scaled experts: several experts per rate, routed with megatron-core's functions."""

import torch

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.model.routing import RateGroupRouter, expert_capacity


def test_duplicated_experts_with_top2_reduce_to_the_paper_model():
    """Two identical experts per rate, both selected, weights summing to 1 -> the one-expert model."""
    torch.manual_seed(0)
    single = VidPrismHead(32, 5, HeadConfig(), max_frames=16).eval()
    torch.manual_seed(0)
    scaled = VidPrismHead(32, 5, HeadConfig(experts_per_rate=2, router_topk=2), max_frames=16).eval()
    shared = {k: v for k, v in single.state_dict().items() if not k.startswith("experts.")}
    scaled.load_state_dict(shared, strict=False)
    for g in range(len(single.rates)):
        for j in range(2):
            scaled.experts[str(2 * g + j)].load_state_dict(single.experts[str(g)].state_dict())
    x = torch.randn(4, 16, 32)
    assert torch.allclose(scaled(x).logits, single(x).logits, atol=1e-5)


def test_capacity_drops_lowest_probability_streams():
    torch.manual_seed(0)
    router = RateGroupRouter(dim=8, num_experts=2, topk=1, capacity_factor=0.5)
    stream = torch.randn(8, 3, 8)
    routed = router.route(stream)
    capacity = expert_capacity(8, 2, 1, 0.5)
    assert capacity == 2
    assert [x.shape for x in routed.expert_inputs] == [(2, 3, 8), (2, 3, 8)]
    combined = RateGroupRouter.combine(routed, routed.expert_inputs, batch=8)  # identity experts
    kept = combined.flatten(1).abs().sum(dim=1) > 0
    assert 1 <= int(kept.sum()) <= 2 * capacity  # the rest were dropped: zero output
    probs = torch.softmax(router.gate(stream.mean(dim=1)), dim=-1)
    for b in torch.nonzero(kept).flatten():
        top = probs[b].max()
        assert torch.allclose(combined[b], top * stream[b], atol=1e-6)


def test_router_gets_gradient_from_task_and_balancing_losses():
    torch.manual_seed(0)
    head = VidPrismHead(32, 5, HeadConfig(experts_per_rate=2, router_topk=1), max_frames=16)
    out = head(torch.randn(4, 16, 32))
    assert out.router_aux_loss > 0 and out.router_z_loss > 0
    out.logits.sum().backward()
    assert all(r.gate.weight.grad is not None and r.gate.weight.grad.abs().sum() > 0 for r in head.routers)
