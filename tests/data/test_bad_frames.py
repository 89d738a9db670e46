"""Bad frames (issue 31): one JPEG check on both decode paths, corrupt frames on the device-decode path
replaced (named and counted) instead of stopping the run, and each epoch's damage count carried in the
batches so the trainer can log it."""

import logging

import pytest
import torch

from tests.data.test_damaged_data import FRAMES, SIZE, _cfg, _corrupt_frames, _jpeg, _warnings, write_shards
from vidprism_ds.data import build_eval_loader, build_train_loader
from vidprism_ds.data.damage import DamageLog, TooManyDamagedSamples
from vidprism_ds.data.device_decode import collate_jpeg_clips, decode_clips


def _cut_first_frame(key_to_cut):
    def damage(key, members):
        if key == key_to_cut:
            whole = members["000000.jpg"]
            members["000000.jpg"] = whole[:len(whole) // 3]
    return damage


def test_cpu_decode_skips_a_jpeg_cut_short_naming_shard_and_key(tmp_path, caplog):
    # libjpeg decodes a cut-short file, greying out what is missing: the CPU path checks the markers too
    data = write_shards(tmp_path / "shards", [4, 4], damage=_cut_first_frame("000000005"))
    loader = build_train_loader(_cfg(), data["dir"], 2)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert "key 000000005: 000000005.000000.jpg: JPEG file cut short (no end marker)" in _warnings(caplog)


def test_cpu_and_device_decode_use_the_same_check():
    from vidprism_ds.data import device_decode, jpeg
    assert device_decode.check_jpeg_markers is jpeg.check_jpeg_markers


GOOD = _jpeg(1)
UNDECODABLE = b"\xff\xd8" + b"\x00\x11" * 40 + b"\xff\xd9"  # both markers, nothing decodable between


def _clip(frames, label, key, flip=0):
    return {"jpegs": frames, "augment": [0, 0, SIZE, SIZE, flip, 0], "label": label, "key": key}


def test_device_decode_replaces_a_clip_whose_frame_does_not_decode_by_the_previous_clip(caplog):
    clips = [_clip([GOOD, GOOD], 0, "/s/a.tar:000000007"), _clip([GOOD, UNDECODABLE], 1, "/s/a.tar:000000008"),
             _clip([GOOD, GOOD], 2, "/s/a.tar:000000009", flip=1)]
    batch = collate_jpeg_clips(clips)
    with caplog.at_level(logging.WARNING):
        frames = decode_clips(batch, torch.device("cpu"), SIZE)
    assert frames.shape == (3, 2, 3, SIZE, SIZE)
    assert torch.equal(frames[1], frames[0])  # the clip before it, pixel for pixel
    assert batch["labels"].tolist() == [0, 0, 2]  # with its label
    assert batch["damaged"] == 1
    assert "shard /s/a.tar, key 000000008: a frame does not decode" in _warnings(caplog)
    assert "replaced by /s/a.tar:000000007 in its batch" in _warnings(caplog)


def test_device_decode_replaces_a_first_clip_by_the_next_good_one():
    clips = [_clip([UNDECODABLE, GOOD], 3, "/s/a.tar:1"), _clip([UNDECODABLE, UNDECODABLE], 1, "/s/a.tar:2"),
             _clip([GOOD, GOOD], 2, "/s/a.tar:3")]
    batch = collate_jpeg_clips(clips)
    frames = decode_clips(batch, torch.device("cpu"), SIZE)
    assert torch.equal(frames[0], frames[2]) and torch.equal(frames[1], frames[2])
    assert batch["labels"].tolist() == [2, 2, 2] and batch["damaged"] == 2


def test_device_decode_stops_past_max_bad_samples_and_when_no_clip_decodes():
    clips = [_clip([GOOD, GOOD], 0, "/s/a.tar:1"), _clip([UNDECODABLE, GOOD], 1, "/s/a.tar:2"),
             _clip([GOOD, UNDECODABLE], 1, "/s/a.tar:3")]
    damage = DamageLog(1, "training", action="replaced", where="on this rank")
    with pytest.raises(TooManyDamagedSamples, match=r"2 damaged samples in this epoch on this rank, more than "
                                                    r"data\.max_bad_samples=1; the last: shard /s/a\.tar, key 3"):
        decode_clips(collate_jpeg_clips(clips), torch.device("cpu"), SIZE, damage=damage)
    with pytest.raises(TooManyDamagedSamples, match="no clip of the batch decodes"):
        decode_clips(collate_jpeg_clips([_clip([UNDECODABLE, GOOD], 0, "/s/a.tar:4")]), torch.device("cpu"), SIZE)


@pytest.mark.parametrize("decode_device", ["cpu", "cuda"])
def test_training_batches_carry_the_damaged_samples_they_skipped(tmp_path, decode_device):
    data = write_shards(tmp_path / "shards", [4, 4], damage=_corrupt_frames({"000000002", "000000005"}))
    batches = list(build_train_loader(_cfg(decode_device=decode_device), data["dir"], 2))
    assert sum(int(b["damaged"]) for b in batches) == 2


def test_evaluation_batches_carry_their_damaged_samples(tmp_path):
    data = write_shards(tmp_path / "shards", [4, 4], damage=_corrupt_frames({"000000001", "000000006"}))
    batches = list(build_eval_loader(_cfg(), data["dir"], 2))
    assert sum(int(b["damaged"]) for b in batches) == 2
    assert len(batches) * 2 == 8 and all(b["frames"].shape[1:] == (1, FRAMES, 3, SIZE, SIZE) for b in batches)
