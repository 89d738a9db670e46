"""Each ablation switch of issue 6 does what its name says (beyond "the model changes")."""

import torch
import torch.nn.functional as F

from vidprism_ds.config.schema import HeadConfig, LossWeights
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.model.losses import combine_losses
from tests.model.dispatch_recorder import RecordingDispatcher

DIM, CLASSES, FRAMES = 32, 4, 16


def _head(**kw):
    torch.manual_seed(0)
    head = VidPrismHead(DIM, CLASSES, HeadConfig(**kw), max_frames=FRAMES)
    head.dispatcher = RecordingDispatcher()
    return head


def _open_gates(head):
    with torch.no_grad():
        for mlp in head.fusion.score_mlps.values():
            mlp[2].bias.fill_(3.0)


def test_without_sampler_the_experts_read_strided_window_means_and_there_is_no_rank_loss():
    head = _head(use_sampler=False, use_fusion=False).train()
    x_btd = torch.randn(3, FRAMES, DIM)
    out = head(x_btd)
    for rate, stream in zip(head.rates, head.dispatcher.inputs):
        expected = F.avg_pool1d(x_btd.transpose(1, 2), kernel_size=rate, stride=rate).transpose(1, 2)
        torch.testing.assert_close(stream, expected)
    assert out.rank_loss.item() == 0.0
    for rate, keep_bn in zip(head.rates, out.keep_indices):
        assert torch.equal(keep_bn[0], torch.arange(0, FRAMES, rate))


def test_without_fusion_the_experts_read_the_sampler_streams_and_with_it_they_do_not():
    x_btd = torch.randn(3, FRAMES, DIM)
    no_fusion = _head(use_fusion=False).eval()
    no_fusion(x_btd)
    sampled = [s(x_btd).stream_bld for s in no_fusion.samplers]
    for stream, expected in zip(no_fusion.dispatcher.inputs, sampled):
        torch.testing.assert_close(stream, expected)

    fused = _head(use_fusion=True).eval()
    fused.load_state_dict(no_fusion.state_dict(), strict=False)  # same samplers and experts
    _open_gates(fused)
    fused(x_btd)
    for stream, expected in zip(fused.dispatcher.inputs, sampled):
        assert (stream - expected).abs().max() > 1e-3


def test_rank_weight_zero_leaves_the_score_head_untrained():
    """The kept token is an argmax, so the rank loss is the score head's only gradient."""
    x_btd = torch.randn(4, FRAMES, DIM)
    labels = torch.randint(0, CLASSES, (4,))
    grads = {}
    for weight in (0.0, 0.1):
        head = _head().train()
        head.zero_grad()
        combine_losses(LossWeights(rank=weight, contrastive=0.0), head(x_btd), labels).total.backward()
        grads[weight] = max(s.score_head[1].weight.grad.abs().max().item()
                            if s.score_head[1].weight.grad is not None else 0.0 for s in head.samplers)
    assert grads[0.0] == 0.0
    assert grads[0.1] > 0.0


def test_position_embeddings_make_the_head_see_order_within_a_stream():
    """Without fusion the experts are blind to the order of a stream's tokens; with positions not."""
    x_btd = torch.randn(2, FRAMES, DIM)
    # One rate of 8: the stream has 2 tokens, one per 8-frame window. Swapping the two windows keeps
    # each window's content and only swaps the tokens.
    blocks = x_btd.view(2, 2, 8, DIM).flip(1).reshape(2, FRAMES, DIM)
    blind = _head(use_fusion=False, sampling_rates=[8], slow_rate_min=100).eval()
    torch.testing.assert_close(blind(x_btd).logits, blind(blocks).logits, atol=1e-5, rtol=1e-5)
    seeing = _head(use_fusion=False, sampling_rates=[8], slow_rate_min=100, expert_pos_embed=True).eval()
    assert (seeing(x_btd).logits - seeing(blocks).logits).abs().max() > 1e-4
