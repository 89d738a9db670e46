"""Raw-video loaders: decoding the listed videos on the fly gives what the shards give."""

import pytest
import torch

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data.loaders import build_eval_loader
from vidprism_ds.data.raw import build_raw_eval_loader, build_raw_train_loader


def test_raw_loader_matches_the_shard_loader(synthetic_shards):
    cfg = DataConfig(dataset="synthetic", num_frames=4, image_size=32, num_workers=0, test_clips=2, test_crops=1)
    shard_batches = list(build_eval_loader(cfg, synthetic_shards["dir"], 5))
    raw_batches = list(build_raw_eval_loader(cfg, synthetic_shards["list"], 5, video_root=synthetic_shards["root"]))
    assert len(raw_batches) == len(shard_batches) == 2
    for raw, shard in zip(raw_batches, shard_batches):
        assert raw["frames"].shape == shard["frames"].shape
        assert torch.equal(raw["labels"], shard["labels"]) and torch.equal(raw["index"], shard["index"])
        # the same frames (the shards only add JPEG loss): far closer than two different videos are
        raw_frames, shard_frames = raw["frames"].float() / 255, shard["frames"].float() / 255
        same_video = (raw_frames - shard_frames).abs().mean()
        other_video = (raw_frames - shard_frames.roll(1, dims=0)).abs().mean()
        assert same_video < 0.05 and same_video < other_video / 4, (same_video, other_video)
    train = build_raw_train_loader(cfg, synthetic_shards["list"], 4, video_root=synthetic_shards["root"])
    batch = next(iter(train))
    assert batch["frames"].shape == (4, 4, 3, 32, 32)


def test_raw_loaders_refuse_dense_and_multirate_clips(synthetic_shards):
    for mode in ("dense", "multirate"):
        cfg = DataConfig(dataset="synthetic", num_frames=4, image_size=32, num_workers=0, clip_sampling=mode)
        with pytest.raises(ValueError, match=f"data.clip_sampling={mode} needs multi-rate shards.*segment clips only"):
            build_raw_eval_loader(cfg, synthetic_shards["list"], 2, video_root=synthetic_shards["root"])
        with pytest.raises(ValueError, match="data_prep/shard.py"):
            build_raw_train_loader(cfg, synthetic_shards["list"], 2, video_root=synthetic_shards["root"])


def test_raw_loaders_name_a_symlink_loop_and_leave_out_labels_outside_the_model_s_classes(tmp_path):
    import os
    import warnings

    from vidprism_ds.data.video_decode import VideoDecodeError, open_video

    os.symlink("loop_b.mp4", tmp_path / "loop_a.mp4")
    os.symlink("loop_a.mp4", tmp_path / "loop_b.mp4")
    with pytest.raises(VideoDecodeError, match="symlink loop"):
        open_video(str(tmp_path / "loop_a.mp4"))
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 7\nc.mp4 3\nd.mp4 9\n")
    cfg = DataConfig(dataset="custom", num_frames=4, image_size=32, num_workers=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = build_raw_eval_loader(cfg, tmp_path / "list.txt", 2, num_classes=4)
    assert loader.num_samples == 2  # a.mp4 and c.mp4
    message = str(caught[-1].message)
    assert "2 of 4 rows left out; the first, line 2 (b.mp4): label 7 is outside the 4 classes (0..3)" in message
    with pytest.warns(UserWarning, match="2 of 4 rows left out"):
        assert build_raw_train_loader(cfg, tmp_path / "list.txt", 2, num_classes=4).num_samples == 2
