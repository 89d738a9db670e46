"""The held-out benchmark's classes differ only in time: appearance alone is at chance by construction."""

import numpy as np
import pytest

from vidprism_ds.data.heldout_temporal import (HELDOUT_CLASSES, class_factors, class_frame_order, main,
                                               render_video)
from vidprism_ds.data.presets import parse_class_names
from vidprism_ds.data.synthetic import render_video as render_project_video

SIZE, FRAMES = 32, 16


def _frame_multiset(frames_nhwc):
    """The bag of frames: every frame's bytes, sorted (order forgotten, multiplicity kept)."""
    return sorted(frame.tobytes() for frame in frames_nhwc)


@pytest.mark.parametrize("num_frames", [8, 16, 32])
def test_every_class_is_a_distinct_permutation_of_the_base_frames(num_frames):
    orders = [class_frame_order(c, num_frames) for c in range(len(HELDOUT_CLASSES))]
    for order in orders:
        assert sorted(order) == list(range(num_frames))
    assert len({tuple(o) for o in orders}) == len(HELDOUT_CLASSES) == 8
    with pytest.raises(ValueError, match="even number of frames"):
        class_frame_order(0, 9)


def test_class_names_spell_their_factors():
    for c, name in enumerate(HELDOUT_CLASSES):
        shape, direction, speed = class_factors(c)
        assert name == f"{('square', 'triangle')[shape]} first, {('rising', 'falling')[direction]}, " \
                       f"{('steady', 'fast')[speed]}"
    assert parse_class_names("\n".join(HELDOUT_CLASSES)) == list(HELDOUT_CLASSES)


def test_appearance_is_class_independent_so_a_frame_bag_model_is_at_chance():
    """For any content, every class shows exactly the same frames: the appearance-only ceiling is 1/8."""
    for key in [(0, "train", k) for k in range(4)]:
        videos = [render_video(key, c, SIZE, FRAMES) for c in range(len(HELDOUT_CLASSES))]
        reference = _frame_multiset(videos[0])
        for video in videos[1:]:
            assert _frame_multiset(video) == reference
        # ... while the order differs: no two classes give the same video
        assert len({v.tobytes() for v in videos}) == len(videos)


def test_different_visuals_and_motion_from_the_project_synthetic_videos():
    video = render_video((1, "val", 0), 0, SIZE, FRAMES).astype(np.float32)  # square first, rising, steady
    background = np.median(video, axis=0)
    moving = np.abs(video - background).sum(-1) > 60  # the shape's pixels
    rows = [np.flatnonzero(m.any(axis=1)).mean() for m in moving]
    cols = [np.flatnonzero(m.any(axis=0)).mean() for m in moving]
    half = FRAMES // 2
    # vertical motion (rows decrease: rising), each shape on a fixed column
    assert rows[half - 1] < rows[0] - 3 and rows[-1] < rows[half] - 3
    assert np.ptp(cols[:half]) < 1.5 and np.ptp(cols[half:]) < 1.5
    # and not the project's horizontally moving disc on the same key
    assert not np.array_equal(render_project_video((1, "val", 0), 0, SIZE, FRAMES), video.astype(np.uint8))


def test_cli_writes_lists_and_labels(tmp_path):
    assert main(["--out", str(tmp_path), "--train-per-class", "1", "--val-per-class", "1", "--frames", "8"]) == 0
    assert (tmp_path / "labels.txt").read_text().splitlines() == list(HELDOUT_CLASSES)
    rows = [line.rsplit(" ", 1) for line in (tmp_path / "train.txt").read_text().splitlines()]
    assert [int(label) for _, label in rows] == list(range(8))
    assert all((tmp_path / rel).is_file() for rel, _ in rows)
