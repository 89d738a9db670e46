"""The broadened frequency benchmark: blink pairs differ only in the period; everything else varies with the
video, not with the class."""

import av
import numpy as np
import pytest

from vidprism_ds.data import frequency_pairs as pairs

BURST = 16  # data_prep/shard.py's default --burst-length


def test_the_pairs_are_every_two_blink_classes_then_come_the_order_classes():
    assert len(pairs.FREQUENCY_PAIRS_CLASSES) == len(pairs.BLINK_PERIODS) + 4
    n = len(pairs.BLINK_PERIODS)
    assert sorted(pairs.PAIRS) == sorted((a, b) for i, a in enumerate(pairs.BLINK_PERIODS)
                                         for b in pairs.BLINK_PERIODS[i + 1:])
    assert len(pairs.PAIRS) == n * (n - 1) // 2 and pairs.PAIRS[0] == (4, 16)  # the pair first
    for p, (short, long) in enumerate(pairs.PAIRS):
        names = [pairs.FREQUENCY_PAIRS_CLASSES[c] for c in pairs.pair_class_ids(p)]
        assert names == [f"blinks every {short} frames", f"blinks every {long} frames"]
    assert pairs.FREQUENCY_PAIRS_CLASSES[pairs.ORDER_CLASS_IDS[0]] == "moving right"
    # pairs inside a burst, and pairs whose long period is longer than a burst
    assert (4, 8) in pairs.PAIRS and (8, 32) in pairs.PAIRS and 32 > BURST


def test_which_pairs_a_burst_resolves():
    assert [pair for pair in pairs.PAIRS if not pairs.burst_resolves(pair, BURST)] == [(16, 32)]
    assert not pairs.burst_resolves((10, 40), BURST)  # not two short cycles in a burst
    assert not pairs.burst_resolves((4, 6), BURST)  # too close to tell by the transitions
    assert not pairs.burst_resolves((1, 8), BURST)  # below Nyquist


def test_the_two_classes_of_a_pair_share_every_draw_but_the_period():
    for k in range(6):
        key = (0, "train", k)
        draw = pairs.draw_video(key)
        for p in range(len(pairs.PAIRS)):
            short, long = (pairs.render_video(key, c) for c in pairs.pair_class_ids(p))
            assert short.shape == long.shape == (draw.num_frames, draw.size, draw.size, 3)
            # the same two pictures (square shown, square hidden), in a different order
            assert {frame.tobytes() for frame in short} == {frame.tobytes() for frame in long}
            assert not np.array_equal(short, long)


def test_lengths_resolutions_duty_cycles_and_phases_vary_between_videos():
    draws = [pairs.draw_video((0, "train", k)) for k in range(200)]
    lengths = [d.num_frames for d in draws]
    assert min(lengths) >= pairs.MIN_FRAMES == 50 and max(lengths) <= pairs.MAX_FRAMES == 125
    assert max(lengths) - min(lengths) > 60
    assert {d.size for d in draws} == set(pairs.RESOLUTIONS)
    duty = [d.duty_cycle for d in draws]
    assert min(duty) < 0.35 and max(duty) > 0.65
    assert np.histogram([d.phase for d in draws], bins=4, range=(0, 1))[0].min() > 30
    sides = [d.square_side / d.size for d in draws]
    assert min(sides) < 0.2 and max(sides) > 0.35


def test_a_square_wave_has_its_period_and_duty_cycle():
    for period in pairs.BLINK_PERIODS:
        for duty, phase in ((0.3, 0.0), (0.5, 0.37), (0.7, 0.91)):
            on = pairs.square_on(period, duty, phase, range(period * 40))
            assert abs(on.mean() - duty) <= 0.5 / period + 1e-9 or on.mean() in (1 / period, 1 - 1 / period)
            # an "off -> on" switch once per period
            assert np.sum(on[1:] & ~on[:-1]) in (39, 40)
            assert np.array_equal(on[period:], on[:-period])


def test_a_burst_tells_a_resolvable_pair_apart_at_every_phase_and_duty():
    """Counting the square's "off -> on" switches in 16 consecutive frames separates the two periods, whatever
    the phase, the duty cycle and where the burst starts: the information a multirate clip must keep."""
    rng = np.random.default_rng(0)
    for short, long in [pair for pair in pairs.PAIRS if pairs.burst_resolves(pair, BURST)]:
        switches = {short: [], long: []}
        for _ in range(300):
            duty, phase, start = rng.uniform(*pairs.DUTY_CYCLE), rng.random(), rng.integers(0, 100)
            for period in (short, long):
                on = pairs.square_on(period, duty, phase, range(start, start + BURST))
                switches[period].append(int(np.sum(on[1:] != on[:-1])))
        assert min(switches[short]) > max(switches[long]), (short, long)


def test_the_dataset_is_deterministic_decodable_and_at_25_fps(tmp_path):
    import decord

    # the pictures are a function of the seed key (the h264 bytes are not always: libx264 encoded one of
    # ten of these videos to different bytes on a second call, same frames in)
    for k in range(3):
        np.testing.assert_array_equal(pairs.render_video((3, "train", k), k), pairs.render_video((3, "train", k), k))
    first = pairs.make_dataset(tmp_path / "a", train_per_class=1, val_per_class=0, seed=3)
    rows = first["train"].read_text().splitlines()
    assert first["labels"].read_text().splitlines() == list(pairs.FREQUENCY_PAIRS_CLASSES)
    assert len(rows) == len(pairs.FREQUENCY_PAIRS_CLASSES)
    for row in rows:
        rel, label = row.rsplit(" ", 1)
        draw = pairs.draw_video((3, "train", int(rel[-9:-4])))
        with av.open(str(tmp_path / "a" / rel)) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == pairs.FPS and stream.frames == draw.num_frames
        # the loaders' decoder reads every resolution the generator draws
        assert decord.VideoReader(str(tmp_path / "a" / rel)).get_batch([0]).shape[1:3] == (draw.size, draw.size)


@pytest.mark.parametrize("size", pairs.RESOLUTIONS)
def test_every_drawn_resolution_decodes(tmp_path, size):
    import decord

    from vidprism_ds.data.generated_videos import write_video

    write_video(tmp_path / "v.mp4", np.zeros((3, size, size, 3), dtype=np.uint8), fps=pairs.FPS)
    assert decord.VideoReader(str(tmp_path / "v.mp4")).get_batch([0, 2]).shape == (2, size, size, 3)
