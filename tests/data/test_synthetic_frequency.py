"""The frequency benchmark's blink classes differ only in rate, and alias in the shards' sparse base."""

import math

import av
import numpy as np
import pytest

from vidprism_ds.data import synthetic_frequency as frequency
from vidprism_ds.data.sampling import base_frame_indices

BLINKS = range(len(frequency.BLINK_CYCLES))
FRAMES = frequency.DEFAULT_FRAMES


def _best_phase_match(cycles: int, target: np.ndarray, frame_indices) -> float:
    """Smallest max-abs opacity difference between ``target`` and a ``cycles`` blink at any phase."""
    phases = np.linspace(0, 2 * math.pi, 7200, endpoint=False)
    opacity = np.stack([frequency.blink_opacity(cycles, p, frame_indices, FRAMES) for p in phases])
    return float(np.abs(opacity - target[None]).max(axis=1).min())


def test_blink_classes_share_content_phase_and_mean_frame():
    videos = [frequency.render_video((3, "train", 7), c, 32, FRAMES).astype(np.float64) for c in BLINKS]
    for video in videos[1:]:
        # same content and phase: frame 0 is the same picture; over whole cycles the mean frame is the same
        np.testing.assert_array_equal(video[0], videos[0][0])
        assert np.abs(video.mean(axis=0) - videos[0].mean(axis=0)).max() <= 0.5  # uint8 rounding only
        assert np.abs(video - videos[0]).max() > 100  # but the frames in between differ
    # the faster the blink, the larger the change between consecutive frames
    change = [np.abs(np.diff(v, axis=0)).mean() for v in videos]
    assert change == sorted(change) and change[-1] > 3 * change[0]


def test_single_frames_have_the_same_distribution_in_every_blink_class():
    """Over random phases the opacity of a frame has one distribution whatever the rate."""
    phases = np.random.default_rng(0).uniform(0, 2 * math.pi, 20000)
    quantiles = [np.quantile([frequency.blink_opacity(c, p, [37], FRAMES)[0] for p in phases], [0.1, 0.5, 0.9])
                 for c in frequency.BLINK_CYCLES]
    for q in quantiles[1:]:
        np.testing.assert_allclose(q, quantiles[0], atol=0.02)


def test_fast_blinks_alias_onto_the_slow_one_in_the_sparse_base_but_not_in_a_burst():
    base = base_frame_indices(FRAMES, frequency.DEFAULT_FPS, max_frames=16)
    assert np.all(np.diff(base) == 6)  # evenly spaced: 4 samples per cycle of the slowest blink
    burst = list(range(40, 48))  # 8 consecutive source frames
    slow = frequency.BLINK_CYCLES[0]
    for cycles in frequency.BLINK_CYCLES[1:]:
        for phase in (0.3, 2.0, 4.4):
            # some phase of the slow blink gives exactly the same base opacities ...
            assert _best_phase_match(slow, frequency.blink_opacity(cycles, phase, base, FRAMES), base) < 2e-3
            # ... but no phase of it matches consecutive frames
            assert _best_phase_match(slow, frequency.blink_opacity(cycles, phase, burst, FRAMES), burst) > 0.2


def test_order_classes_are_permutations_of_one_bag_of_frames():
    videos = [frequency.render_video((0, "val", 2), c, 32, FRAMES) for c in range(4, 8)]
    bags = [np.sort(v.reshape(FRAMES, -1), axis=0) for v in videos]
    for video, bag in zip(videos[1:], bags[1:]):
        np.testing.assert_array_equal(bag, bags[0])
        assert not np.array_equal(video, videos[0])


def test_the_dataset_is_deterministic_and_written_at_its_own_frame_rate(tmp_path):
    first = frequency.make_dataset(tmp_path / "a", train_per_class=1, val_per_class=0, size=16, num_frames=64, seed=2)
    second = frequency.make_dataset(tmp_path / "b", train_per_class=1, val_per_class=0, size=16, num_frames=64, seed=2)
    rows = first["train"].read_text().splitlines()
    assert first["labels"].read_text().splitlines() == list(frequency.FREQUENCY_BENCH_CLASSES)
    assert rows[0] == "videos/train/blinks_4_times/train_00000.mp4 0" and len(rows) == 8
    for row in rows:
        rel = row.rsplit(" ", 1)[0]
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    with av.open(str(tmp_path / "a" / rows[0].rsplit(" ", 1)[0])) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == frequency.DEFAULT_FPS and stream.frames == 64


def test_the_command_line_refuses_videos_too_short_for_the_fastest_blink(tmp_path, capsys):
    with pytest.raises(SystemExit):
        frequency.main(["--out", str(tmp_path / "short"), "--frames", "32"])
    assert f"--frames must be >= {frequency.MIN_FRAMES}" in capsys.readouterr().err
