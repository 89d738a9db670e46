"""The shared writer of the generated datasets: what it writes for each generator stays what it was."""

import hashlib

import pytest

from vidprism_ds.data import heldout_temporal, synthetic
from vidprism_ds.data.generated_videos import write_video

# sha256 of rendered frames, recorded before the two generators shared generated_videos.py: the demo's
# accuracy and the held-out benchmark's figures were measured on exactly these videos
RENDERED_SHA256 = {
    "synthetic": "59993ef1fdaa886f14b48b8b39a43c7cd2b8855796469fea80eeb8812d84fbf4",
    "heldout_temporal": "5f0e41f4a24849b4835701721c385bbe5ac03cddebf91b6fc647a4ccdc2aec8c",
}


def test_rendered_frames_are_unchanged():
    synthetic_frames = synthetic.render_video((0, "train", 5), 1, 64, 32)
    heldout_frames = heldout_temporal.render_video((0, "val", 3), 5, 32, 16)
    assert hashlib.sha256(synthetic_frames.tobytes()).hexdigest() == RENDERED_SHA256["synthetic"]
    assert hashlib.sha256(heldout_frames.tobytes()).hexdigest() == RENDERED_SHA256["heldout_temporal"]


@pytest.mark.parametrize("module, first_val_video", [
    (synthetic, "videos/val/moving_right/val_00000.mp4"),
    (heldout_temporal, "videos/val/val_00000.mp4"),
])
def test_each_listed_video_is_video_k_of_its_split_encoded(tmp_path, module, first_val_video):
    classes = module.DATASET.class_names
    paths = module.make_dataset(tmp_path / "set", train_per_class=1, val_per_class=1, size=16, num_frames=8, seed=4)
    assert paths["labels"].read_text().splitlines() == list(classes)
    for split in ("train", "val"):
        rows = [line.rsplit(" ", 1) for line in paths[split].read_text().splitlines()]
        assert [int(label) for _, label in rows] == list(range(len(classes)))  # video k has class k mod classes
        for k, (rel, label) in enumerate(rows):
            expected = tmp_path / "expected" / rel
            write_video(expected, module.render_video((4, split, k), int(label), 16, 8))
            assert (tmp_path / "set" / rel).read_bytes() == expected.read_bytes(), rel
    assert paths["val"].read_text().splitlines()[0] == f"{first_val_video} 0"


def test_each_command_line_keeps_its_own_frame_rule(tmp_path, capsys):
    with pytest.raises(SystemExit):
        heldout_temporal.main(["--out", str(tmp_path / "odd"), "--frames", "9"])
    assert "--frames must be an even number >= 8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        heldout_temporal.main(["--out", str(tmp_path / "codec"), "--codec", "mpeg4"])  # h264 only
    assert synthetic.main(["--out", str(tmp_path / "syn"), "--train-per-class", "1", "--val-per-class", "0",
                           "--size", "16", "--frames", "5", "--codec", "mpeg4"]) == 0
    assert "wrote 4 train and 0 val videos" in capsys.readouterr().out
    assert (tmp_path / "syn" / "train.txt").read_text().splitlines()[0] == "videos/train/moving_right/train_00000.avi 0"
