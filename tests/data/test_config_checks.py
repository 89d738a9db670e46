"""The data lines of the config validation (vidprism_ds/config/validation.py)."""

import pytest

from vidprism_ds.config import ConfigError, ExperimentConfig, validate


@pytest.mark.parametrize("data, key", [
    ({"dataset": "kinetics"}, "data.dataset"),
    ({"dataset": "custom"}, "data.labels"),
    ({"dataset": "ssv2", "hflip": True}, "data.hflip"),
    ({"dataset": "synthetic", "hflip": True}, "data.hflip"),
    ({"shuffle_buffer": -1}, "data.shuffle_buffer"),
    ({"shuffle_block_shards": 0}, "data.shuffle_block_shards"),
    ({"list_format": "tsv"}, "data.list_format"),
    ({"clip_sampling": "sparse"}, "data.clip_sampling"),
    ({"clip_sampling": "dense", "dense_stride": 0}, "data.dense_stride"),
    ({"clip_sampling": "multirate", "num_frames": 8, "multirate_burst_frames": 8}, "data.multirate_burst_frames"),
    ({"clip_sampling": "multirate", "num_frames": 1}, "data.num_frames"),
])
def test_bad_data_settings_name_their_key(data, key):
    cfg = ExperimentConfig()
    for name, value in data.items():
        setattr(cfg.data, name, value)
    with pytest.raises(ConfigError, match=f"^{key}:"):
        validate(cfg)


def test_good_data_settings_pass():
    cfg = ExperimentConfig()
    cfg.data.dataset, cfg.data.hflip = "k400", True
    validate(cfg)
    cfg.data.dataset, cfg.data.labels, cfg.data.list_format = "custom", "labels.txt", "kinetics_csv"
    validate(cfg)


def test_clip_sampling_modes_with_their_parameters_pass():
    cfg = ExperimentConfig()
    cfg.data.clip_sampling, cfg.data.dense_stride = "dense", 2
    validate(cfg)
    cfg.data.clip_sampling, cfg.data.num_frames, cfg.data.multirate_burst_frames = "multirate", 8, 7
    cfg.model.head.frame_time_encoding = cfg.model.head.expert_pos_embed = True
    validate(cfg)


def test_multirate_clips_need_the_heads_frame_time_encoding_except_for_a_frame_bag():
    cfg = ExperimentConfig()
    cfg.data.clip_sampling = "multirate"
    with pytest.raises(ConfigError, match="^model.head.frame_time_encoding: must be true with data.clip_sampling=multirate"):
        validate(cfg)
    cfg.model.variant = "meanpool"  # ignores the order and times of its frames anyway
    validate(cfg)
    cfg.model.variant, cfg.data.clip_sampling = "vidprism", "dense"  # evenly spaced frames: the index is the time
    validate(cfg)


def test_multirate_clips_need_a_fast_rate_group_to_read_the_burst():
    cfg = ExperimentConfig()
    cfg.data.clip_sampling, cfg.model.head.frame_time_encoding = "multirate", True
    cfg.model.head.expert_pos_embed = True
    validate(cfg)
    cfg.model.head.slow_rate_min = 2  # every rate of 2, 4, 8, 16 is slow
    with pytest.raises(ConfigError, match="^model.head.slow_rate_min: 2 makes every rate"):
        validate(cfg)
    cfg.data.clip_sampling = "dense"
    validate(cfg)


def test_vidprism_on_multirate_clips_needs_positions_in_its_experts():
    cfg = ExperimentConfig()
    cfg.data.clip_sampling, cfg.model.head.frame_time_encoding = "multirate", True
    with pytest.raises(ConfigError, match="^model.head.expert_pos_embed: must be true with data.clip_sampling=multirate"):
        validate(cfg)
    cfg.model.head.expert_pos_embed = True
    validate(cfg)
    cfg.model.head.expert_pos_embed, cfg.model.variant = False, "homogeneous"  # reads all frames in one stream
    validate(cfg)
    cfg.model.variant, cfg.data.clip_sampling = "vidprism", "segment"  # the paper's experts have none
    validate(cfg)
