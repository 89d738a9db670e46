import random

import pytest

from vidprism_ds.data.sampling import (ClipSampling, ClipSource, LayoutError, NeedsMultirateShards,
                                       base_frame_indices, burst_frame_indices, eval_clip_offsets, eval_frame_picks,
                                       frame_times, segment_indices, stored_frames, train_frame_picks)


def test_base_keeps_every_frame_up_to_the_cap():
    assert base_frame_indices(40, 30.0, 64) == list(range(40))
    capped = base_frame_indices(300, 30.0, 64)
    assert len(capped) == 64 and capped == sorted(set(capped))
    assert capped[0] < 300 / 64 and capped[-1] > 300 - 300 / 64  # spread over the whole video


def test_base_resamples_to_target_fps_before_capping():
    at_10 = base_frame_indices(300, 30.0, 1000, target_fps=10.0)
    assert at_10 == list(range(0, 300, 3))
    assert base_frame_indices(50, 8.0, 1000, target_fps=10.0) == list(range(50))  # never upsampled
    assert base_frame_indices(0, 30.0, 64) == []


def test_eval_sampling_takes_segment_centres():
    assert segment_indices(64, 8) == [4, 12, 20, 28, 36, 44, 52, 60]
    assert segment_indices(64, 8, offset=0.0) == [0, 8, 16, 24, 32, 40, 48, 56]
    assert eval_clip_offsets(1) == [0.5] and eval_clip_offsets(2) == [0.25, 0.75]
    # short videos repeat frames instead of failing
    assert segment_indices(3, 6) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        segment_indices(0, 8)


def test_train_sampling_jitters_each_segment_independently():
    draws = [segment_indices(64, 8, random.Random(seed)) for seed in range(200)]
    for t in range(8):
        column = {d[t] for d in draws}
        assert column == set(range(8 * t, 8 * t + 8))  # every frame of segment t, none outside it
    # offsets are per segment: the draws are not all the same shift of the centre pattern
    shifts = {tuple(i - 8 * t for t, i in enumerate(d)) for d in draws}
    assert len(shifts) > 100


# ---------------------------------------------------------------------------------------------- multi-rate shards


def _ten_second_source(burst_count=2, burst_length=16):
    """A 10 s, 30 fps video as a multi-rate shard stores it (64-frame base, default bursts)."""
    base = base_frame_indices(300, 30.0, 64)
    stored = stored_frames(base, burst_frame_indices(300, 30.0, burst_count, burst_length))
    return stored, ClipSource(len(stored.indices), stored.base, stored.bursts, frame_times(stored.indices, 30.0))


def test_bursts_are_consecutive_evenly_anchored_and_depend_on_the_length_only():
    bursts = burst_frame_indices(300, 30.0, 2, 16)
    assert bursts == [list(range(67, 83)), list(range(217, 233))]  # centred on 75 and 225
    assert burst_frame_indices(300, 25.0, 2, 16) == bursts  # the rate does not move the anchors
    assert burst_frame_indices(300, 30.0, 0, 16) == []
    assert burst_frame_indices(300, 30.0, 1, 4, burst_fps=10.0) == [[145, 148, 151, 154]]  # every 3rd at 10 fps
    assert burst_frame_indices(10, 30.0, 2, 16) == [list(range(10)), list(range(10))]  # short: what fits


def test_a_frame_in_the_base_and_a_burst_is_stored_once():
    stored = stored_frames([0, 5, 10, 15], [[4, 5, 6], [14, 15, 16]])
    assert stored.indices == [0, 4, 5, 6, 10, 14, 15, 16]
    assert [stored.indices[p] for p in stored.base] == [0, 5, 10, 15]
    assert [[stored.indices[p] for p in burst] for burst in stored.bursts] == [[4, 5, 6], [14, 15, 16]]


def test_the_default_bursts_add_at_most_half_the_base():
    stored, _ = _ten_second_source()
    assert 64 < len(stored.indices) <= 64 + 32


def _increasing(values) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("frames, stride", [(16, 1), (8, 2)])
def test_dense_training_clips_are_one_burst_run_at_the_stride(frames, stride):
    stored, source = _ten_second_source()
    sampling = ClipSampling(mode="dense", num_frames=frames, dense_stride=stride)
    rng, starts = random.Random(0), set()
    for _ in range(100):
        picks = train_frame_picks(source, sampling, rng)
        assert len(picks) == frames and _increasing([source.times[p] for p in picks])
        sources = [stored.indices[p] for p in picks]
        assert sources == list(range(sources[0], sources[0] + frames * stride, stride))
        starts.add(tuple(sources))
    # the burst and the start are drawn: a dense clip has 16 - span + 1 starts in each of the 2 bursts
    assert len(starts) == 2 * (16 - (frames - 1) * stride)


def _check_multirate_clip(stored, source, sampling, picks) -> list[int]:
    """Two parts, each in time order: a segment clip over the whole base, then consecutive burst frames.
    Returns the burst part's source indices."""
    base_count = sampling.num_frames - sampling.fast_frames
    base_part, burst_part = picks[:base_count], picks[base_count:]
    assert len(picks) == sampling.num_frames and len(burst_part) == sampling.fast_frames
    assert all(p in source.base for p in base_part) and _increasing([source.times[p] for p in base_part])
    segment = len(source.base) / base_count  # one base frame in each of base_count equal segments
    assert [int(source.base.index(p) // segment) for p in base_part] == list(range(base_count))
    burst_sources = [stored.indices[p] for p in burst_part]
    assert burst_sources == list(range(burst_sources[0], burst_sources[0] + len(burst_sources)))
    assert any(set(burst_part) <= set(burst) for burst in source.bursts)
    return burst_sources


@pytest.mark.parametrize("frames, burst_frames", [(32, 16), (8, 0), (12, 8)])
def test_multirate_training_clips_are_a_segment_clip_then_a_burst_run(frames, burst_frames):
    stored, source = _ten_second_source()
    sampling = ClipSampling(mode="multirate", num_frames=frames, burst_frames=burst_frames)
    rng, burst_starts = random.Random(0), set()
    for _ in range(300):
        burst_starts.add(_check_multirate_clip(stored, source, sampling, train_frame_picks(source, sampling, rng))[0])
    # both bursts and every start in them are drawn
    assert burst_starts == set(range(67, 67 + 17 - sampling.fast_frames)) | set(range(217, 217 + 17 - sampling.fast_frames))


def test_a_multirate_clips_segment_part_is_the_segment_clip_of_its_length():
    stored, source = _ten_second_source()
    multirate = ClipSampling(mode="multirate", num_frames=24, burst_frames=8)
    segment = ClipSampling(mode="segment", num_frames=16)
    for picks, segment_picks in zip(eval_frame_picks(source, multirate, 3), eval_frame_picks(source, segment, 3)):
        assert picks[:16] == segment_picks


def test_segment_picks_read_the_base_as_a_single_base_shard_did():
    stored, source = _ten_second_source()
    sampling = ClipSampling(mode="segment", num_frames=8)
    old = ClipSource.single_base(64)
    for seed in range(20):
        new_picks = train_frame_picks(source, sampling, random.Random(seed))
        old_picks = train_frame_picks(old, sampling, random.Random(seed))
        assert [stored.indices[p] for p in new_picks] == [base_frame_indices(300, 30.0, 64)[p] for p in old_picks]
    assert eval_frame_picks(old, sampling, 2) == [segment_indices(64, 8, None, o) for o in eval_clip_offsets(2)]


@pytest.mark.parametrize("mode", ["dense", "multirate"])
def test_test_views_are_deterministic_and_differ(mode):
    _, source = _ten_second_source()
    sampling = ClipSampling(mode=mode, num_frames=8)
    views = eval_frame_picks(source, sampling, 4)
    assert views == eval_frame_picks(source, sampling, 4)
    assert len({tuple(v) for v in views}) == 4
    stored = stored_frames(base_frame_indices(300, 30.0, 64), burst_frame_indices(300, 30.0, 2, 16))
    for picks in views:
        if mode == "dense":
            assert len(picks) == 8 and _increasing([source.times[p] for p in picks])
        else:
            _check_multirate_clip(stored, source, sampling, picks)
    if mode == "dense":  # four views over two bursts: two in each, at different starts
        first_frames = [picks[0] for picks in views]
        assert sum(f in source.bursts[0] for f in first_frames) == 2 == sum(f in source.bursts[1] for f in first_frames)


def test_a_shard_without_bursts_is_refused_with_how_to_reshard():
    old = ClipSource.single_base(12)
    with pytest.raises(NeedsMultirateShards, match="re-shard with data_prep/shard.py --burst-count"):
        train_frame_picks(old, ClipSampling(mode="dense", num_frames=4), random.Random(0))
    with pytest.raises(NeedsMultirateShards, match="data.clip_sampling=multirate"):
        eval_frame_picks(old, ClipSampling(mode="multirate", num_frames=4), 1)


def test_sample_json_is_read_back_and_checked():
    meta = {"frame_indices": [0, 2], "frame_times": [0.0, 0.1], "base_frames": [0, 1], "bursts": [[1]]}
    source = ClipSource.from_meta(meta, 2)
    assert (source.base, source.bursts, source.times) == ([0, 1], [[1]], [0.0, 0.1])
    assert ClipSource.from_meta({"frame_indices": [0, 2]}, 2).bursts == []  # a single-base shard
    with pytest.raises(LayoutError, match="base_frames/bursts"):
        ClipSource.from_meta({**meta, "bursts": [[2]]}, 2)
    with pytest.raises(LayoutError, match="frame_times"):
        ClipSource.from_meta({**meta, "frame_times": [0.1, 0.1]}, 2)


def test_a_video_shorter_than_the_clip_still_gives_a_full_clip():
    stored = stored_frames([0, 1, 2], burst_frame_indices(3, 30.0, 2, 16))
    source = ClipSource(3, stored.base, stored.bursts, frame_times(stored.indices, 30.0))
    dense = train_frame_picks(source, ClipSampling(mode="dense", num_frames=5, dense_stride=2), random.Random(1))
    assert len(dense) == 5 and dense == sorted(dense) and set(dense) == {0, 1, 2}
    multirate = train_frame_picks(source, ClipSampling(mode="multirate", num_frames=5), random.Random(1))
    # a segment part of 3 (every base frame) and a burst part of 2 consecutive frames
    assert multirate[:3] == [0, 1, 2] and multirate[4] == multirate[3] + 1
