"""The synthetic classes differ only in time: frame-bag statistics cannot separate them, order can."""

import subprocess
import sys

import numpy as np

from vidprism_ds.data.presets import SYNTHETIC_CLASSES
from vidprism_ds.data.synthetic import class_frame_order, make_dataset, render_video
from vidprism_ds.data.video_decode import decode_base_frames


def _disc_x(frames_nhwc):
    """Per-frame x of the saturated disc: the column-weighted mass of the most saturated pixels."""
    f = frames_nhwc.astype(np.float32)
    saturation = f.max(-1) - f.min(-1)
    mask = saturation > 0.5 * saturation.max(axis=(1, 2), keepdims=True)
    xs = np.arange(f.shape[2])[None, None, :]
    return (mask * xs).sum(axis=(1, 2)) / np.maximum(1, mask.sum(axis=(1, 2)))


def _bag_feature(frames_nhwc):
    """Permutation-invariant: mean frame colour, mean/std of the disc position, its sorted positions."""
    x = _disc_x(frames_nhwc)
    return np.concatenate([frames_nhwc.reshape(-1, 3).mean(0) / 255, [x.mean(), x.std()], np.sort(x)[::4]])


def _order_feature(frames_nhwc):
    """Order-aware: displacement of the disc over the first and the second half."""
    x = _disc_x(frames_nhwc)
    half = len(x) // 2
    return np.array([x[half - 1] - x[0], x[-1] - x[half]])


def _nearest_mean_accuracy(train_x, train_y, test_x, test_y):
    """Nearest class mean in standardised feature space."""
    means = np.stack([train_x[train_y == c].mean(0) for c in range(len(SYNTHETIC_CLASSES))])
    scale = train_x.std(0) + 1e-6
    distances = (((test_x[:, None] - means[None]) / scale) ** 2).sum(-1)
    return float((distances.argmin(1) == test_y).mean())


def test_every_class_is_a_permutation_of_the_same_frames():
    for n in (8, 9, 32):
        for c in range(len(SYNTHETIC_CLASSES)):
            assert sorted(class_frame_order(c, n)) == list(range(n))
    videos = [render_video(("content", 7), c, 32, 16) for c in range(len(SYNTHETIC_CLASSES))]
    bags = [sorted(f.tobytes() for f in v) for v in videos]
    assert all(b == bags[0] for b in bags)  # identical multisets of frames
    assert len({v.tobytes() for v in videos}) == len(videos)  # different videos


def test_frame_bag_is_at_chance_while_order_separates_the_classes(tmp_path):
    paths = make_dataset(tmp_path, train_per_class=12, val_per_class=12, size=32, num_frames=16, seed=3)
    def load(split):
        feats_bag, feats_order, labels = [], [], []
        for line in paths[split].read_text().splitlines():
            rel, label = line.rsplit(" ", 1)
            frames = decode_base_frames(str(tmp_path / rel), 64).frames_nhwc  # decoded from the real mp4
            feats_bag.append(_bag_feature(frames))
            feats_order.append(_order_feature(frames))
            labels.append(int(label))
        return np.array(feats_bag), np.array(feats_order), np.array(labels)

    bag_tr, order_tr, y_tr = load("train")
    bag_te, order_te, y_te = load("val")
    chance = 1 / len(SYNTHETIC_CLASSES)
    assert _nearest_mean_accuracy(order_tr, y_tr, order_te, y_te) >= 0.95
    assert _nearest_mean_accuracy(bag_tr, y_tr, bag_te, y_te) < chance + 0.2


def test_command_line_writes_videos_lists_and_labels(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vidprism_ds.data.synthetic", "--out", str(tmp_path),
                             "--train-per-class", "1", "--val-per-class", "1", "--size", "32", "--frames", "8"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "labels.txt").read_text().splitlines() == list(SYNTHETIC_CLASSES)
    rows = (tmp_path / "train.txt").read_text().splitlines()
    assert len(rows) == len(SYNTHETIC_CLASSES)
    assert all((tmp_path / r.rsplit(" ", 1)[0]).stat().st_size > 0 for r in rows)
    again = tmp_path / "again"
    make_dataset(again, 1, 1, size=32, num_frames=8)
    first = rows[0].rsplit(" ", 1)[0]
    assert (again / first).read_bytes() == (tmp_path / first).read_bytes()  # deterministic from the seed
    bad = subprocess.run([sys.executable, "-m", "vidprism_ds.data.synthetic", "--out", str(tmp_path), "--size", "33"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--size" in bad.stderr
