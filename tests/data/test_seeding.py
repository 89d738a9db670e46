"""Slots and their random streams: seeded from (seed, epoch, slot, purpose), the same in every process and
run, and the one stream every path that builds training clips draws from."""

import random
from types import SimpleNamespace

from vidprism_ds.data import clips, device_decode, raw
from vidprism_ds.data.clip_settings import TrainClipSettings
from vidprism_ds.data.seeding import (Slot, clip_rng, current_slot, sample_rng, seeded_rng, slot_range, slot_rng,
                                      split_count)


def test_streams_are_pinned_to_seed_epoch_slot_and_purpose(as_worker):
    # the numbers a run draws must not move: a resumed run replays the data of the interrupted one
    assert seeded_rng(4, 2, 7, "augment").random() == 0.4584521668931143
    assert seeded_rng(4, 2, 7, "samples").random() == 0.5947947411860011
    as_worker(1, 2)
    assert current_slot(3, 4) == Slot(index=7, count=8)  # slot = rank x workers + worker
    assert slot_rng(4, 2, 3, 4, "samples").getstate() == seeded_rng(4, 2, 7, "samples").getstate()
    assert clip_rng(4, 2, 3, 4).getstate() == seeded_rng(4, 2, 7, "augment").getstate()
    first = clip_rng(4, 2, 3, 4).random()
    assert first != clip_rng(4, 3, 3, 4).random() and first != clip_rng(4, 2, 2, 4).random()
    assert first != slot_rng(4, 2, 3, 4, "samples").random()


def test_splits_differ_by_at_most_one():
    assert [split_count(7, 3, part) for part in range(3)] == [3, 2, 2]
    assert [slot_range(7, Slot(index, 3)) for index in range(3)] == [(0, 2), (2, 4), (4, 7)]


def test_shard_clips_draw_from_their_position_s_stream_on_either_decode_path(monkeypatch, as_worker):
    """The CPU clips and the device-decode clips of shard samples draw picks and augmentation from the
    sample's own stream, keyed by (seed, epoch, position in the global order): not by rank or worker."""
    settings = TrainClipSettings(num_frames=4, image_size=32, crop_scale_min=0.5, flip=True, grayscale_prob=0.5)
    draws: dict[str, list[list[float]]] = {"clips": [], "device_decode": [], "raw": []}

    def recorder(path):
        def record(*args):  # each path's clip builder, given the stage's generator: draw from it
            rng = next(a for a in args if isinstance(a, random.Random))
            draws[path].append([rng.random() for _ in range(3)])
            return (None, []) if path != "device_decode" else {}
        return record

    monkeypatch.setattr(clips, "sample_clip_source", lambda sample: None)
    monkeypatch.setattr(clips, "train_clip", recorder("clips"))
    monkeypatch.setattr(device_decode, "train_jpeg_clip", recorder("device_decode"))
    monkeypatch.setattr(raw, "_open_with_base", lambda entry, frames: (None, [0]))
    monkeypatch.setattr(raw, "train_clip", recorder("raw"))
    shard_samples = [{"frames_jpeg": [], "label": 0, "meta": {}, "__index__": 3, "__position__": p} for p in (5, 9)]
    for worker, workers in ((0, 1), (1, 2)):  # whichever worker builds them
        as_worker(worker, workers)
        list(clips.to_train_clips(iter(shard_samples), settings=settings, seed=4, epoch=2))
        list(device_decode.to_train_jpeg_clips(iter(shard_samples), settings=settings, seed=4, epoch=2))
    expected = [[rng.random() for _ in range(3)] for rng in (sample_rng(4, 2, 5), sample_rng(4, 2, 9))]
    assert draws["clips"] == draws["device_decode"] == expected + expected
    assert sample_rng(4, 2, 5).getstate() == seeded_rng(4, 2, 5, "clip").getstate()
    assert sample_rng(4, 3, 5).random() != sample_rng(4, 2, 5).random() != sample_rng(4, 2, 6).random()

    # the raw-video loader keeps its per-slot stream (slot 7 = rank 3 x 2 workers + worker 1)
    raw_items = [{"entry": SimpleNamespace(path="video.mp4", label=0)} for _ in range(2)]
    list(raw.raw_to_train_clips(iter(raw_items), settings=settings, seed=4, epoch=2, rank=3, world_size=4))
    expected_raw = seeded_rng(4, 2, 7, "augment")
    assert draws["raw"] == [[expected_raw.random() for _ in range(3)] for _ in range(2)]
