"""data.decode_device=cuda: workers ship JPEG bytes; ``decode_clips`` rebuilds the CPU path's clips.

The decode runs on whatever device it is given, so the CPU here checks the format, the random draws
and the crop/flip/grayscale maths; bench/gpu_check.py compares nvJPEG on a GPU with the CPU path.
"""

import dataclasses

import pytest
import torch

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import build_train_loader
from vidprism_ds.data.device_decode import collate_jpeg_clips, decode_clips, uses_device_decode


def _cfg(**overrides):
    settings = dict(dataset="synthetic", num_frames=4, image_size=32, num_workers=1, shuffle_buffer=4,
                    crop_scale_min=0.3, hflip=False, grayscale_prob=0.5)
    settings.update(overrides)
    return DataConfig(**settings)


def test_jpeg_batches_decode_to_the_cpu_paths_frames(synthetic_shards):
    cpu_cfg = _cfg()
    device_cfg = dataclasses.replace(cpu_cfg, decode_device="cuda")
    cpu_batches = list(build_train_loader(cpu_cfg, synthetic_shards["dir"], 3, seed=7))
    jpeg_batches = list(build_train_loader(device_cfg, synthetic_shards["dir"], 3, seed=7))
    assert len(cpu_batches) == len(jpeg_batches) >= 2
    grayscale_seen = False
    for cpu, jpeg in zip(cpu_batches, jpeg_batches):
        assert uses_device_decode(jpeg) and not uses_device_decode(cpu)
        assert jpeg["jpeg_offsets"].shape == (3 * 4 + 1,) and jpeg["jpeg_bytes"].dtype == torch.uint8
        assert torch.equal(cpu["labels"], jpeg["labels"])
        frames = decode_clips(jpeg, torch.device("cpu"), 32)
        assert frames.shape == cpu["frames"].shape and frames.dtype == torch.uint8
        # same frames, same crop boxes: only the resize's arithmetic differs (fp32 vs the uint8 kernel)
        difference = (frames.int() - cpu["frames"].int()).abs()
        assert difference.float().mean() < 1.0 and difference.max() <= 8, difference.max()
        grayscale_seen |= bool(jpeg["augment"][:, 5].any())
    assert grayscale_seen  # the grayscale branch was exercised


def test_collate_packs_each_frame_once_in_clip_order():
    clips = [{"jpegs": [b"ab", b"c"], "augment": [0, 0, 2, 2, 0, 0], "label": 1},
             {"jpegs": [b"", b"defg"], "augment": [1, 1, 3, 3, 1, 0], "label": 0}]
    batch = collate_jpeg_clips(clips)
    assert batch["jpeg_offsets"].tolist() == [0, 2, 3, 3, 7]
    assert bytes(batch["jpeg_bytes"].tolist()) == b"abcdefg"
    assert batch["augment"].shape == (2, 6) and batch["labels"].tolist() == [1, 0]


def test_cuda_decode_on_a_cpu_trainer_fails_at_start_naming_the_key(tmp_path):
    from vidprism_ds.config import load_config
    from vidprism_ds.config.schema import ConfigError
    from vidprism_ds.train.trainer import Trainer

    if torch.cuda.is_available():
        pytest.skip("this process has a GPU")
    cfg = load_config(None, ["data.decode_device=cuda", f"train.output_dir={tmp_path}"])
    environ = dict(__import__("os").environ)
    with pytest.raises(ConfigError, match=r"^data\.decode_device: cuda"):
        Trainer(cfg, {})
    # refused before any process group: the launcher variables of this (test) process are untouched
    assert dict(__import__("os").environ) == environ and not torch.distributed.is_initialized()


def test_jpeg_batches_of_multirate_clips_carry_the_cpu_paths_frame_times(multirate_shards):
    cpu_cfg = _cfg(clip_sampling="multirate", num_frames=6, num_workers=0)
    device_cfg = dataclasses.replace(cpu_cfg, decode_device="cuda")
    cpu_batches = list(build_train_loader(cpu_cfg, multirate_shards["dir"], 2, seed=4))
    jpeg_batches = list(build_train_loader(device_cfg, multirate_shards["dir"], 2, seed=4))
    assert len(cpu_batches) == len(jpeg_batches) == 3
    for cpu, jpeg in zip(cpu_batches, jpeg_batches):
        assert jpeg["frame_times"].shape == (2, 6) and torch.equal(jpeg["frame_times"], cpu["frame_times"])
        difference = (decode_clips(jpeg, torch.device("cpu"), 32).int() - cpu["frames"].int()).abs()
        assert difference.float().mean() < 1.0  # the same picks and crops as the CPU path
