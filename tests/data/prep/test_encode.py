"""What a worker says about a video it cannot open, before the decoder is involved."""

import os

from vidprism_ds.data.prep.encode import EncodedSample, EncodeTask, SkippedVideo, encode_video
from vidprism_ds.data.sampling import FrameSettings
from vidprism_ds.data.video_decode import BROKEN_SYMLINK, SYMLINK_LOOP


def _encode(path):
    return encode_video(EncodeTask(0, str(path), 1, path.name, FrameSettings(max_frames=4, burst_count=0)))


def test_symlink_loop_and_dangling_link_are_named_not_missing(tmp_path):
    os.symlink("loop_b.mp4", tmp_path / "loop_a.mp4")
    os.symlink("loop_a.mp4", tmp_path / "loop_b.mp4")
    os.symlink("gone.mp4", tmp_path / "dangling.mp4")
    (tmp_path / "looping_dir").symlink_to("looping_dir")  # a loop in a folder of the path, not the file
    outcomes = {name: _encode(tmp_path / name) for name in ("loop_a.mp4", "dangling.mp4", "absent.mp4")}
    outcomes["looping_dir/x.mp4"] = _encode(tmp_path / "looping_dir" / "x.mp4")
    assert all(isinstance(o, SkippedVideo) for o in outcomes.values())
    assert {name: o.reason for name, o in outcomes.items()} == {
        "loop_a.mp4": SYMLINK_LOOP, "looping_dir/x.mp4": SYMLINK_LOOP,
        "dangling.mp4": BROKEN_SYMLINK, "absent.mp4": "missing file"}
    assert SYMLINK_LOOP == "symlink loop (too many levels of symbolic links)"


def test_a_symlink_to_a_video_is_decoded(tmp_path, make_rows):
    (rel, _), = make_rows(tmp_path, 1)
    os.symlink(tmp_path / rel, tmp_path / "link.mp4")
    sample = _encode(tmp_path / "link.mp4")
    assert isinstance(sample, EncodedSample) and sample.num_frames == 4


def test_a_multirate_sample_stores_base_and_bursts_once_with_their_times(tmp_path, make_rows):
    import json

    from vidprism_ds.data.sampling import base_frame_indices, burst_frame_indices

    (rel, _), = make_rows(tmp_path, 1, frames=40)
    settings = FrameSettings(max_frames=8, burst_count=2, burst_length=6)
    sample = encode_video(EncodeTask(0, str(tmp_path / rel), 1, rel, settings))
    meta = json.loads(sample.members["json"])
    base = base_frame_indices(40, meta["source_fps"], 8)
    bursts = burst_frame_indices(40, meta["source_fps"], 2, 6)
    stored = meta["frame_indices"]
    assert stored == sorted(set(base).union(*bursts)) and len(stored) < len(base) + 12  # shared frames once
    assert sample.num_frames == meta["num_frames"] == len(stored)
    assert sorted(k for k in sample.members if k.endswith(".jpg")) == [f"{i:06d}.jpg" for i in range(len(stored))]
    assert [stored[p] for p in meta["base_frames"]] == base
    assert [[stored[p] for p in burst] for burst in meta["bursts"]] == bursts
    assert all(b == a + 1 for burst in bursts for a, b in zip(burst, burst[1:]))
    assert meta["frame_times"] == [i / meta["source_fps"] for i in stored]
    assert meta["frame_settings"]["burst_length"] == 6
    again = encode_video(EncodeTask(0, str(tmp_path / rel), 1, rel, settings))
    assert again.members == sample.members  # deterministic bytes: what resume relies on
