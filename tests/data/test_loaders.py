"""Loaders over real shards: exactly-once evaluation, equal batches on every rank, train epochs."""

import json
from collections import Counter

import pytest
import torch

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import build_eval_loader, build_train_loader
from vidprism_ds.data.damage import is_damaged
from vidprism_ds.data.sample_filters import keep_safe_members
from vidprism_ds.data.tar_reader import shard_samples


def _cfg(**overrides):
    settings = dict(dataset="synthetic", num_frames=4, image_size=32, num_workers=2, shuffle_buffer=4,
                    test_clips=1, test_crops=1)
    settings.update(overrides)
    return DataConfig(**settings)


def _labels_by_index(synthetic_shards):
    return {i: label for i, (_, label) in enumerate(synthetic_shards["rows"])}


@pytest.mark.parametrize("batch_size", [1, 3])
def test_eval_sees_every_sample_exactly_once_over_two_ranks_and_two_workers(synthetic_shards, batch_size):
    cfg = _cfg(test_clips=2, test_crops=3)
    seen, batches_per_rank = Counter(), []
    for rank in range(2):
        loader = build_eval_loader(cfg, synthetic_shards["dir"], batch_size, rank=rank, world_size=2)
        batches = list(loader)
        assert len(batches) == len(loader)
        batches_per_rank.append(len(batches))
        for batch in batches:
            assert batch["frames"].shape == (batch_size, 6, 4, 3, 32, 32) and batch["frames"].dtype == torch.uint8
            assert batch["labels"].dtype == torch.int64 and batch["valid"].dtype == torch.bool
            assert torch.all(batch["index"][~batch["valid"]] == -1)
            assert torch.all(batch["frames"][~batch["valid"]] == 0)
            for index, label in zip(batch["index"][batch["valid"]].tolist(), batch["labels"][batch["valid"]].tolist()):
                seen[index] += 1
                assert label == _labels_by_index(synthetic_shards)[index]
    assert batches_per_rank[0] == batches_per_rank[1]
    assert seen == Counter(range(10))  # every one of the 10 samples once, nothing twice


def test_train_gives_equal_full_batches_per_rank_and_reseeds_per_epoch(synthetic_shards):
    cfg = _cfg(num_workers=2)
    loaders = [build_train_loader(cfg, synthetic_shards["dir"], 2, rank=r, world_size=2, seed=5) for r in range(2)]
    assert [len(loader) for loader in loaders] == [2, 2]  # 10 samples // (2 ranks x 2 per batch)
    for loader in loaders:
        batches = list(loader)
        assert len(batches) == len(loader)
        for batch in batches:
            assert batch["frames"].shape == (2, 4, 3, 32, 32) and batch["labels"].shape == (2,)
    first = [b["frames"] for b in loaders[0]]
    again = [b["frames"] for b in loaders[0]]
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # same seed and epoch: same batches
    loaders[0].set_epoch(1)
    other_epoch = [b["frames"] for b in loaders[0]]
    assert not all(torch.equal(a, b) for a, b in zip(first, other_epoch))


def test_train_in_process_covers_the_labels_it_reads(synthetic_shards):
    cfg = _cfg(num_workers=0, shuffle_buffer=0)
    loader = build_train_loader(cfg, synthetic_shards["dir"], 5, seed=1)
    assert len(loader) == 2
    labels = torch.cat([b["labels"] for b in loader]).tolist()
    assert sorted(labels) == sorted(label for _, label in synthetic_shards["rows"])  # one round of 10 samples


class _Booby:
    """Unpickling this creates a file: proof that a member was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_only_frames_json_and_cls_are_read(tmp_path):
    import io
    import pickle
    import tarfile

    marker = tmp_path / "unpickled"
    members = {"000000001.000000.jpg": b"j0", "000000001.000001.jpg": b"j1",
               "000000001.json": json.dumps({"label": 1}).encode(), "000000001.cls": b"1",
               "000000001.pickle": pickle.dumps(_Booby(str(marker))), "000000001.pyd": pickle.dumps(_Booby(str(marker))),
               "000000002.pickle": b"x", "000000002.json": b"{}", "000000002.cls": b"0"}  # no frames: damaged
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    kept, dropped = keep_safe_members(shard_samples(str(tmp_path / "s.tar")))
    assert [m.read() for m in kept["frames_jpeg"]] == [b"j0", b"j1"]
    assert kept["label"] == 1 and kept["meta"] == {"label": 1} and kept["__key__"] == "000000001"
    assert set(kept) == {"__key__", "__url__", "__index__", "frames_jpeg", "meta", "label"}
    assert is_damaged(dropped) and dropped["__key__"] == "000000002" and "no frames" in dropped["__damage__"]
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- clip sampling


def _increasing(times: torch.Tensor) -> bool:
    return bool(torch.all(times[..., 1:] > times[..., :-1]))


def _increasing_parts(times: torch.Tensor, mode: str, burst_frames: int = 3) -> bool:
    """Times increase inside a clip (dense), or inside each of a multirate clip's two parts."""
    if mode == "dense":
        return _increasing(times)
    return _increasing(times[..., :-burst_frames]) and _increasing(times[..., -burst_frames:])


@pytest.mark.parametrize("mode", ["dense", "multirate"])
def test_dense_and_multirate_batches_carry_increasing_frame_times(multirate_shards, mode):
    cfg = _cfg(clip_sampling=mode, num_frames=6, num_workers=0, test_clips=3, test_crops=3)
    train = list(build_train_loader(cfg, multirate_shards["dir"], 2, seed=3))
    assert len(train) == 3
    for batch in train:
        assert batch["frame_times"].shape == (2, 6) and batch["frame_times"].dtype == torch.float32
        assert _increasing_parts(batch["frame_times"], mode)
    if mode == "dense":  # consecutive source frames: one source frame period apart
        steps = torch.cat([b["frame_times"].diff(dim=-1) for b in train])
        assert torch.allclose(steps, steps[0, 0].expand_as(steps))
    else:  # the burst part is consecutive source frames; the segment part spans more of the video
        burst_steps = torch.cat([b["frame_times"][:, -3:].diff(dim=-1) for b in train])
        source_step = burst_steps[0, 0]
        assert torch.allclose(burst_steps, source_step.expand_as(burst_steps))
        spans = torch.cat([b["frame_times"][:, 2] - b["frame_times"][:, 0] for b in train])
        assert torch.all(spans > 4 * source_step)
    runs = [list(build_eval_loader(cfg, multirate_shards["dir"], 2)) for _ in range(2)]
    for batch, again in zip(*runs):
        times = batch["frame_times"]
        assert times.shape == (2, 9, 6) and torch.equal(times, again["frame_times"])  # deterministic views
        assert torch.equal(batch["frames"], again["frames"])
        valid = times[batch["valid"]]
        assert _increasing_parts(valid, mode)
        assert torch.equal(valid[:, 0], valid[:, 1])  # the crops of one clip share its times
        assert len({tuple(clip.tolist()) for clip in valid[0, ::3]}) == 3  # three clips, three frame sets


def test_segment_batches_on_multirate_shards_are_the_single_base_batches(multirate_shards):
    cfg = _cfg(num_workers=0, test_clips=2, test_crops=3)
    for training, build in ((True, lambda d: build_train_loader(cfg, d, 2, seed=7)),
                            (False, lambda d: build_eval_loader(cfg, d, 2))):
        new, old = list(build(multirate_shards["dir"])), list(build(multirate_shards["single_base_dir"]))
        assert len(new) == len(old) > 0
        for a, b in zip(new, old):
            # training batches carry the CPU seconds their making took (vidprism_ds.train.loader_pace)
            assert ("cpu_seconds" in a and a["cpu_seconds"] > 0) if training else "cpu_seconds" not in a
            assert "frame_times" not in a and a.keys() == b.keys()
            same = [k for k in a if k != "cpu_seconds"]  # the loader's CPU time: a measurement, not data
            assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in same)  # "damaged": int


def test_single_base_shards_refuse_dense_and_multirate_at_start_saying_how_to_reshard(multirate_shards):
    for mode in ("dense", "multirate"):
        with pytest.raises(ValueError, match=f"clip_sampling={mode} needs dense bursts.*written before multi-rate "
                                             "shards.*re-shard with data_prep/shard.py --burst-count 2"):
            build_train_loader(_cfg(clip_sampling=mode), multirate_shards["single_base_dir"], 2)
    # bursts shorter than a dense clip: the shards' settings are named, and the length that is needed
    with pytest.raises(ValueError, match="made with --burst-count 2 --burst-length 8.*--burst-length 16"):
        build_eval_loader(_cfg(clip_sampling="dense", num_frames=16), multirate_shards["dir"], 2)
    assert len(build_train_loader(_cfg(), multirate_shards["single_base_dir"], 2)) == 3  # segment reads them
