import random

import pytest

from vidprism_ds.data.sampling import base_frame_indices, eval_clip_offsets, segment_indices


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
