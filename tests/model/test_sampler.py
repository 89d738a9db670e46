import pytest
import torch

from tests.model.reference import reference_sampler
from vidprism_ds.model.sampler import ContentAwareSampler, StridedPoolSampler


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("num_frames,rate", [(32, 4), (12, 8), (9, 4), (5, 2), (8, 16), (7, 1)])
def test_matches_loop_reference(official, num_frames, rate):
    torch.manual_seed(num_frames * 7 + rate)
    sampler = ContentAwareSampler(24, rate, normalise_over_window=not official)
    x_btd = torch.randn(3, num_frames, 24)
    out = sampler(x_btd, compute_rank_loss=True)
    ref_stream, ref_rank, ref_keep = reference_sampler(sampler, x_btd, official, compute_rank_loss=True)
    assert out.stream_bld.shape == (3, -(-num_frames // rate), 24)
    torch.testing.assert_close(out.stream_bld, ref_stream, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.rank_loss, ref_rank, atol=1e-6, rtol=1e-5)
    assert torch.equal(out.keep_index_bl, ref_keep)


def test_rank_loss_uses_importance_prior():
    torch.manual_seed(1)
    sampler = ContentAwareSampler(16, 4)
    x_btd = torch.randn(2, 10, 16)
    prior_bt = torch.randn(2, 10)
    out = sampler(x_btd, compute_rank_loss=True, importance_prior_bt=prior_bt)
    _, ref_rank, _ = reference_sampler(sampler, x_btd, False, compute_rank_loss=True, prior_bt=prior_bt)
    torch.testing.assert_close(out.rank_loss, ref_rank)
    without = sampler(x_btd, compute_rank_loss=True).rank_loss
    assert not torch.allclose(out.rank_loss, without)


def test_single_frame_window_passes_through_unchanged():
    sampler = ContentAwareSampler(8, 4)
    x_btd = torch.randn(2, 9, 8)  # windows 4, 4, 1
    out = sampler(x_btd)
    torch.testing.assert_close(out.stream_bld[:, -1], x_btd[:, -1])


def test_default_merge_is_convex_but_official_adds_each_token_fully():
    """The official weights A/(A+eps) are ~1: a window of identical tokens grows to (1 + (w-1)/2)x."""
    x_btd = torch.ones(1, 4, 8)
    default = ContentAwareSampler(8, 4, normalise_over_window=True)(x_btd).stream_bld
    official = ContentAwareSampler(8, 4, normalise_over_window=False)(x_btd).stream_bld
    torch.testing.assert_close(default, torch.full_like(default, 1.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(official, torch.full_like(official, 2.5), atol=1e-5, rtol=0)


def test_rank_loss_gradient_reaches_score_head_only_through_prediction():
    torch.manual_seed(2)
    sampler = ContentAwareSampler(16, 4)
    out = sampler(torch.randn(2, 8, 16), compute_rank_loss=True)
    out.rank_loss.backward()
    assert sampler.score_head[1].weight.grad.abs().sum() > 0
    assert sampler.metric_proj.weight.grad.abs().sum() > 0


def test_strided_pool_is_window_mean():
    x_btd = torch.arange(2 * 6 * 3, dtype=torch.float32).view(2, 6, 3)
    out = StridedPoolSampler(4)(x_btd).stream_bld
    torch.testing.assert_close(out[:, 0], x_btd[:, :4].mean(1))
    torch.testing.assert_close(out[:, 1], x_btd[:, 4:].mean(1))


@pytest.mark.parametrize("normalise", [True, False])
@pytest.mark.parametrize("num_frames", [32, 13, 1])
@pytest.mark.parametrize("with_prior", [False, True])
def test_packed_sampling_equals_each_rate_alone(normalise, num_frames, with_prior):
    """sample_all_rates (every rate in one computation) against ContentAwareSampler per rate."""
    from vidprism_ds.model.packed_sampler import sample_all_rates

    torch.manual_seed(num_frames)
    samplers = [ContentAwareSampler(16, r, normalise_over_window=normalise) for r in (2, 4, 8, 16)]
    x_btd = torch.randn(3, num_frames, 16)
    prior_bt = torch.rand(3, num_frames) if with_prior else None
    packed = sample_all_rates(samplers, x_btd, compute_rank_loss=True, importance_prior_bt=prior_bt)
    for g, sampler in enumerate(samplers):
        alone = sampler(x_btd, compute_rank_loss=True, importance_prior_bt=prior_bt)
        torch.testing.assert_close(packed.streams[g], alone.stream_bld, atol=1e-6, rtol=1e-6)
        assert torch.equal(packed.keep_indices[g], alone.keep_index_bl)
        torch.testing.assert_close(packed.rank_loss_r[g], alone.rank_loss, atol=1e-7, rtol=1e-6)
