"""Clip settings taken from the data config."""

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import clip_settings


def test_direction_sensitive_datasets_are_never_flipped():
    def flip(**overrides):
        return clip_settings.TrainClipSettings.from_config(DataConfig(num_frames=4, image_size=32, **overrides)).flip

    assert flip(dataset="k400", hflip=True)
    assert not flip(dataset="k400", hflip=False)
    assert not flip(dataset="ssv2", hflip=True)
