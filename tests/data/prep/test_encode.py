"""What a worker says about a video it cannot open, before the decoder is involved."""

import os

from vidprism_ds.data.prep.encode import (BROKEN_SYMLINK, SYMLINK_LOOP, EncodedSample, EncodeTask, SkippedVideo,
                                          encode_video)
from vidprism_ds.data.sampling import FrameSettings


def _encode(path):
    return encode_video(EncodeTask(0, str(path), 1, path.name, FrameSettings(max_frames=4)))


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
