"""The data lines of the config validation (vidprism_ds/config/validation.py)."""

import pytest

from vidprism_ds.config import ConfigError, ExperimentConfig, validate


@pytest.mark.parametrize("data, key", [
    ({"dataset": "kinetics"}, "data.dataset"),
    ({"dataset": "custom"}, "data.labels"),
    ({"dataset": "ssv2", "hflip": True}, "data.hflip"),
    ({"dataset": "synthetic", "hflip": True}, "data.hflip"),
    ({"shuffle_buffer": -1}, "data.shuffle_buffer"),
    ({"list_format": "tsv"}, "data.list_format"),
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
