"""A multirate clip in the VidPrism head (docs/model.md#multirate-clips-in-the-head): the segment part takes
the paper's path unchanged, the fast rate groups also read the burst part: every burst frame, then the change
from each to the next."""

import pytest
import torch

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.frame_times import neighbour_gaps
from vidprism_ds.model.head import VidPrismHead

DIM, CLASSES, SEGMENT, BURST = 32, 5, 16, 8
RATES = (2, 4, 8, 16)  # slow_rate_min 8: groups 0 and 1 are fast


def _head(burst_frames: int, **kw) -> VidPrismHead:
    torch.manual_seed(0)
    cfg = HeadConfig(sampling_rates=RATES, frame_time_encoding=True, **kw)
    return VidPrismHead(DIM, CLASSES, cfg, max_frames=SEGMENT + burst_frames, burst_frames=burst_frames).eval()


def _times(batch: int = 2) -> torch.Tensor:
    segment = torch.arange(SEGMENT) * 0.25  # a 4 s video's base
    burst = 1.5 + torch.arange(BURST) / 24  # consecutive 24 fps frames
    return torch.cat([segment, burst]).expand(batch, -1).clone()


def test_the_segment_part_takes_the_segment_clips_path_and_only_fast_experts_read_the_burst():
    multirate, segment_only = _head(BURST), _head(0)
    assert all(torch.equal(a, b) for a, b in zip(multirate.state_dict().values(), segment_only.state_dict().values()))
    torch.manual_seed(1)
    x_btd, times_bt = torch.randn(2, SEGMENT + BURST, DIM), _times()
    with torch.no_grad():  # make the time encoding act, so the two parts' gaps matter
        multirate.frame_time_encoding.weight.normal_(std=0.1)
        segment_only.frame_time_encoding.weight.copy_(multirate.frame_time_encoding.weight)
    out = multirate(x_btd, frame_times=times_bt)
    reference = segment_only(x_btd[:, :SEGMENT], frame_times=times_bt[:, :SEGMENT])
    slow = [2, 3]
    torch.testing.assert_close(out.expert_means[:, slow], reference.expert_means[:, slow], atol=1e-6, rtol=0)
    assert (out.expert_means[:, :2] - reference.expert_means[:, :2]).abs().amax() > 1e-3
    for g in slow:
        assert torch.equal(out.keep_indices[g], reference.keep_indices[g])
    for g, rate in enumerate(RATES[:2]):  # the segment tokens' picks, every burst frame, each change's later frame
        assert out.keep_indices[g].shape[1] == SEGMENT // rate + 2 * BURST - 1
        burst_keep = out.keep_indices[g][:, SEGMENT // rate:]
        frames = torch.arange(SEGMENT, SEGMENT + BURST)
        assert torch.equal(burst_keep, torch.cat([frames, frames[1:]]).expand(2, -1))
    # a change inside the burst reaches the fast experts and the logits, never the slow experts
    moved = x_btd.clone()
    moved[:, SEGMENT + 3] += 1.0
    changed = multirate(moved, frame_times=times_bt)
    torch.testing.assert_close(changed.expert_means[:, slow], out.expert_means[:, slow], atol=0, rtol=0)
    assert (changed.logits - out.logits).abs().amax() > 1e-5


def test_stream_lengths_count_the_burst_tokens_of_fast_groups():
    assert _head(BURST).expert_stream_lengths(SEGMENT + BURST) == [8 + 15, 4 + 15, 2, 1]
    assert _head(0).expert_stream_lengths(SEGMENT) == [8, 4, 2, 1]
    # learned positions cover the longer fast streams
    head = _head(BURST, expert_pos_embed=True)
    assert [head.experts[str(g)].pos_embed.shape[0] for g in range(4)] == [23, 19, 2, 1]
    head(torch.randn(1, SEGMENT + BURST, DIM), frame_times=_times(1))


def test_an_on_off_event_with_a_4_frame_cycle_reaches_the_fast_experts_at_every_phase():
    """Issue 29: a rate-2 window over 2 frames of a 2-on/2-off burst holds one "on" and one "off" frame at
    odd phases, so any pooling of it (keeping one frame, or averaging) gives a constant stream; the fast
    experts must see the alternation at every phase."""
    from vidprism_ds.model.sampler import ContentAwareSampler, StridedPoolSampler

    torch.manual_seed(0)
    on_d, off_d = torch.randn(DIM), torch.randn(DIM)
    head = _head(BURST)
    captured = {}
    run_experts = head._run_experts
    head._run_experts = lambda streams: captured.setdefault("streams", streams) and run_experts(streams)
    for phase in range(4):
        pattern = [((n + phase) % 4) < 2 for n in range(BURST)]
        burst_fd = torch.stack([on_d if on else off_d for on in pattern])
        x_btd = torch.cat([torch.randn(1, SEGMENT, DIM), burst_fd[None]], dim=1)
        captured.clear()
        head(x_btd, frame_times=_times(1))
        for g, rate in enumerate(RATES[:2]):
            burst_tokens_ld = captured["streams"][g][0, SEGMENT // rate:]
            assert torch.equal(burst_tokens_ld[:BURST], burst_fd)  # every frame, unpooled
            changes_ld = burst_tokens_ld[BURST:]  # then the changes: on every second one at every phase
            torch.testing.assert_close(changes_ld, burst_fd[1:] - burst_fd[:-1])
            assert (changes_ld.norm(dim=-1) > 0).tolist() == [pattern[n] != pattern[n + 1] for n in range(BURST - 1)]
            assert sum(pattern[n] != pattern[n + 1] for n in range(BURST - 1)) >= (BURST - 1) // 2
        if phase % 2:  # what the head no longer does: a window of 2 frames sees a constant
            for sampler in (ContentAwareSampler(DIM, 2), StridedPoolSampler(2)):
                pooled_ld = sampler(burst_fd[None]).stream_bld[0]
                torch.testing.assert_close(pooled_ld, pooled_ld[:1].expand_as(pooled_ld))


def test_training_has_the_segment_rank_loss_and_reaches_every_parameter():
    head = _head(BURST).train()
    x_btd = torch.randn(2, SEGMENT + BURST, DIM)
    out = head(x_btd, frame_times=_times())
    # the burst frames are not windowed, so the rank loss is the segment part's
    reference = _head(0).train()(x_btd[:, :SEGMENT], frame_times=_times()[:, :SEGMENT])
    torch.testing.assert_close(out.rank_loss, reference.rank_loss)
    assert out.rank_loss > 0
    (out.logits.sum() + out.rank_loss).backward()
    assert head.frame_time_encoding.weight.grad.abs().amax() > 0
    assert all(p.grad is not None for name, p in head.named_parameters() if "samplers" in name)


def test_a_clip_of_burst_frames_only_or_without_a_fast_group_is_refused():
    with pytest.raises(ValueError, match="at least one base frame"):
        VidPrismHead(DIM, CLASSES, HeadConfig(), max_frames=8, burst_frames=8)
    with pytest.raises(ValueError, match="needs a fast rate group"):
        VidPrismHead(DIM, CLASSES, HeadConfig(sampling_rates=(8, 16)), max_frames=24, burst_frames=8)


def test_neighbour_gaps_stay_inside_each_part():
    previous_bt, following_bt = neighbour_gaps(_times(1), burst_frames=BURST)
    torch.testing.assert_close(previous_bt[0, :SEGMENT], torch.full((SEGMENT,), 0.25))
    torch.testing.assert_close(following_bt[0, SEGMENT:], torch.full((BURST,), 1 / 24))
    # read as one sequence, the first burst frame's gap would be the jump back from the segment's end
    assert neighbour_gaps(_times(1))[0][0, SEGMENT] > 2.0
