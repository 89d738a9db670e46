"""Damaged data (issue 13): start-up checks of the shard folder, manifest and class list, and damaged
samples (truncated tar, corrupt JPEG, bad label) skipped in training and made invalid in evaluation,
up to data.max_bad_samples per epoch and worker.

The shards here are written by hand with ``tarfile`` (members ``KEY.000000.jpg``..., ``KEY.json``,
``KEY.cls``, as the sharder writes them) so each test can damage exactly the sample it names.
"""

import io
import json
import logging
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import build_eval_loader, build_train_loader
from vidprism_ds.data.damage import TooManyDamagedSamples
from vidprism_ds.data.device_decode import decode_clips
from vidprism_ds.data.presets import SYNTHETIC_CLASSES

FRAMES, SIZE = 4, 32
GARBAGE = b"this is not a JPEG file at all"


def _cfg(**overrides) -> DataConfig:
    settings = dict(dataset="synthetic", num_frames=FRAMES, image_size=SIZE, num_workers=0, shuffle_buffer=0,
                    test_clips=1, test_crops=1)
    settings.update(overrides)
    return DataConfig(**settings)


def _jpeg(seed: int) -> bytes:
    pixels = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return bytes(encode_jpeg(pixels, quality=90).tolist())


def sample_members(index: int, label: int) -> dict[str, bytes]:
    """One sample as the sharder writes it: FRAMES JPEGs, json, cls."""
    members = {f"{f:06d}.jpg": _jpeg(index * 100 + f) for f in range(FRAMES)}
    meta = {"label": label, "num_frames": FRAMES, "width": SIZE, "height": SIZE}
    members["json"] = json.dumps(meta).encode()
    members["cls"] = str(label).encode()
    return members


def write_tar(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for extension in sorted(members):
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(members[extension])
                tar.addfile(info, io.BytesIO(members[extension]))


def write_shards(out: Path, shard_sizes: list[int], damage=None, classes=SYNTHETIC_CLASSES) -> dict:
    """Shards of ``shard_sizes`` samples (keys 000000000..., label = index % 4) and a manifest;
    ``damage(key, members)`` may change a sample's members. Returns {"dir", "keys": [[keys of shard k]]}."""
    out.mkdir(parents=True)
    shards, keys, index = [], [], 0
    for number, count in enumerate(shard_sizes):
        samples = {}
        for _ in range(count):
            key = f"{index:09d}"
            samples[key] = sample_members(index, index % len(SYNTHETIC_CLASSES))
            if damage is not None:
                damage(key, samples[key])
            index += 1
        name = f"shard-{number:06d}.tar"
        write_tar(out / name, samples)
        shards.append({"name": name, "samples": count, "bytes": (out / name).stat().st_size})
        keys.append(list(samples))
    manifest = {"format": "vidprism-shards", "version": 1, "dataset": "synthetic", "classes": list(classes),
                "num_classes": len(classes), "shards": shards, "num_samples": index}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return {"dir": out, "keys": keys}


def truncate_inside(tar_path: Path, member_name: str) -> None:
    """Cut the file in the middle of ``member_name``'s data, as an interrupted copy would."""
    with tarfile.open(tar_path) as tar:
        info = tar.getmember(member_name)
    with open(tar_path, "r+b") as file:
        file.truncate(info.offset_data + info.size // 2)


def _warnings(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def _eval_over_ranks(cfg, shard_dir, batch_size, world_size=2, **kwargs):
    """{global index: [valid, ...]} over all ranks, and each rank's batch count."""
    seen, batch_counts = {}, []
    for rank in range(world_size):
        loader = build_eval_loader(cfg, shard_dir, batch_size, rank=rank, world_size=world_size, **kwargs)
        batches = list(loader)
        assert len(batches) == len(loader)
        batch_counts.append(len(batches))
        for batch in batches:
            assert batch["frames"].shape[0] == batch_size
            for index, valid in zip(batch["index"].tolist(), batch["valid"].tolist()):
                if index >= 0:
                    seen.setdefault(index, []).append(valid)
    return seen, batch_counts


# ---------------------------------------------------------------------------------------------- start-up


def test_missing_shard_folder_fails_at_build_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nowhere'}: no such shard folder"):
        build_train_loader(_cfg(), tmp_path / "nowhere", 2)


def test_garbled_manifest_fails_at_build_naming_it(tmp_path):
    data = write_shards(tmp_path / "shards", [2])
    (data["dir"] / "manifest.json").write_text('{"format": "vidprism-shards", "shards": [')  # cut short
    with pytest.raises(ValueError, match=r"manifest\.json: not a JSON document"):
        build_eval_loader(_cfg(), data["dir"], 2)


@pytest.mark.parametrize("remove", ["shards", "num_classes", "samples", "name"])
def test_manifest_without_a_needed_key_fails_at_build_naming_it(tmp_path, remove):
    data = write_shards(tmp_path / "shards", [2])
    path = data["dir"] / "manifest.json"
    manifest = json.loads(path.read_text())
    if remove in ("samples", "name"):
        del manifest["shards"][0][remove]
    else:
        del manifest[remove]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"^{path}: .*{remove}"):
        build_train_loader(_cfg(), data["dir"], 2)


def test_manifest_listing_a_missing_shard_fails_at_build_naming_it(tmp_path):
    data = write_shards(tmp_path / "shards", [2, 2])
    (data["dir"] / "shard-000001.tar").unlink()
    for build in (build_train_loader, build_eval_loader):
        with pytest.raises(FileNotFoundError, match=r"manifest\.json lists .*shard-000001\.tar, which does not exist"):
            build(_cfg(), data["dir"], 2)


def test_a_shard_of_another_size_than_the_manifest_says_is_warned_about_at_build(tmp_path, caplog):
    data = write_shards(tmp_path / "shards", [3])
    truncate_inside(data["dir"] / "shard-000000.tar", f"{data['keys'][0][1]}.000002.jpg")
    with caplog.at_level(logging.WARNING):
        build_train_loader(_cfg(), data["dir"], 1)
    assert "shard-000000.tar" in _warnings(caplog) and "truncated" in _warnings(caplog)


# ---------------------------------------------------------------------------------------------- classes


def test_labels_file_that_differs_from_the_manifests_classes_fails_at_build_naming_both(tmp_path):
    data = write_shards(tmp_path / "shards", [2])
    labels = tmp_path / "labels.txt"
    labels.write_text("moving right\nmoving left\nleft and back\nright and back\n")  # two swapped
    cfg = _cfg(dataset="custom", labels=str(labels))
    with pytest.raises(ValueError, match=rf"data\.labels \({labels}\) does not match the classes recorded in "
                                         rf"{data['dir'] / 'manifest.json'} \(class 2 is 'left and back'"):
        build_train_loader(cfg, data["dir"], 2)
    with pytest.raises(ValueError, match="does not match the classes recorded"):
        build_eval_loader(cfg, data["dir"], 2)


def test_preset_whose_list_differs_from_the_manifests_classes_fails_at_build(tmp_path):
    data = write_shards(tmp_path / "shards", [2])
    with pytest.raises(ValueError, match=r"data\.dataset=k400 class list \(packaged k400\.txt.*\(400 classes there, "
                                         r"4 recorded\)"):
        build_train_loader(_cfg(dataset="k400"), data["dir"], 2)


def test_matching_class_lists_pass_including_an_id_name_csv_and_a_zero_shot_list(tmp_path):
    data = write_shards(tmp_path / "shards", [2])
    csv_labels = tmp_path / "labels.csv"
    csv_labels.write_text("id,name\n1,moving left\n0,moving right\n3,left and back\n2,right and back\n")
    build_train_loader(_cfg(dataset="custom", labels=str(csv_labels)), data["dir"], 2)
    # zero-shot: the validation shards hold other classes than data.dataset; the caller gives the list
    build_eval_loader(_cfg(dataset="k400"), data["dir"], 2, class_names=list(SYNTHETIC_CLASSES))
    unrecorded = write_shards(tmp_path / "integer_labels", [2], classes=())
    manifest = json.loads((unrecorded["dir"] / "manifest.json").read_text())
    (unrecorded["dir"] / "manifest.json").write_text(json.dumps({**manifest, "num_classes": 4}))
    build_train_loader(_cfg(dataset="k400"), unrecorded["dir"], 2)  # nothing recorded: nothing to compare


def test_more_classes_in_the_manifest_than_the_model_has_fails_at_build(tmp_path):
    data = write_shards(tmp_path / "shards", [2])
    with pytest.raises(ValueError, match=r"manifest\.json: the shards have 4 classes, the model 3"):
        build_train_loader(_cfg(), data["dir"], 2, num_classes=3)
    build_train_loader(_cfg(), data["dir"], 2, num_classes=710)  # a wider head is fine


# ---------------------------------------------------------------------------------------------- training


def _corrupt_frames(keys: set[str], frames=GARBAGE):
    def damage(key, members):
        if key in keys:
            for f in range(FRAMES):
                members[f"{f:06d}.jpg"] = frames
    return damage


def test_training_skips_a_corrupt_jpeg_naming_shard_and_key(tmp_path, caplog):
    data = write_shards(tmp_path / "shards", [4, 4], damage=_corrupt_frames({"000000005"}))
    loader = build_train_loader(_cfg(), data["dir"], 2)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert all(b["frames"].shape == (2, FRAMES, 3, SIZE, SIZE) for b in batches)
    warnings = _warnings(caplog)
    assert "shard-000001.tar, key 000000005: 000000005.000000.jpg: not a JPEG file" in warnings, warnings


@pytest.mark.parametrize("limit, fails", [(2, False), (1, True)])
def test_more_damaged_samples_than_max_bad_samples_stop_naming_the_last(tmp_path, limit, fails):
    # one shard of 6: the 2 batches of 3 take every sample, the 2 damaged ones included
    data = write_shards(tmp_path / "shards", [6], damage=_corrupt_frames({"000000001", "000000002"}))
    loader = build_train_loader(_cfg(max_bad_samples=limit), data["dir"], 3)
    if not fails:
        assert len(list(loader)) == 2
        return
    message = (r"2 damaged samples in this epoch on one loader worker, more than data\.max_bad_samples=1; "
               r"the last: shard .*shard-000000\.tar, key 00000000[12]: 00000000[12]\.000000\.jpg: not a JPEG")
    with pytest.raises(TooManyDamagedSamples, match=message):
        list(loader)


def test_max_bad_samples_zero_stops_at_the_first_in_a_loader_worker(tmp_path):
    data = write_shards(tmp_path / "shards", [4], damage=_corrupt_frames({"000000002"}))
    loader = build_train_loader(_cfg(max_bad_samples=0, num_workers=1), data["dir"], 2)
    with pytest.raises(TooManyDamagedSamples, match=r"key 000000002: 000000002\.000000\.jpg: not a JPEG file"):
        list(loader)


def test_training_skips_the_samples_of_a_truncated_tar(tmp_path, caplog):
    data = write_shards(tmp_path / "shards", [4, 4])
    truncate_inside(data["dir"] / "shard-000000.tar", "000000001.000002.jpg")
    loader = build_train_loader(_cfg(max_bad_samples=100), data["dir"], 2)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert all(b["frames"].shape == (2, FRAMES, 3, SIZE, SIZE) for b in batches)
    # sample 1 is cut inside a frame, 2 and 3 are gone: each is replaced by a whole sample of its block
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert not {1, 2, 3} & set(indices) and sum(b["damaged"] for b in batches) == 3
    warnings = _warnings(caplog)
    for missing in (1, 2, 3):
        assert (f"replaced by shard {data['dir']}/shard-0000") in warnings
        assert (f"shard-000000.tar: sample {missing} of the manifest's 4 is not in the shard (not a whole tar "
                "file") in warnings, warnings


def test_a_label_outside_the_classes_is_skipped_naming_shard_and_key(tmp_path, caplog):
    def label_999(key, members):
        if key == "000000003":
            members["cls"], members["json"] = b"999", json.dumps({"label": 999}).encode()

    data = write_shards(tmp_path / "shards", [4, 4], damage=label_999)
    loader = build_train_loader(_cfg(), data["dir"], 4)
    with caplog.at_level(logging.WARNING):
        labels = torch.cat([b["labels"] for b in loader])
    assert labels.shape == (8,) and int(labels.max()) < 4  # the model's loss never sees 999
    assert "shard-000000.tar, key 000000003: label 999 is outside the 4 classes (0..3)" in _warnings(caplog)


def test_device_decode_workers_skip_frames_that_are_not_jpeg_files(tmp_path, caplog):
    cut_short = _jpeg(0)[:200]  # starts like a JPEG, has no end marker
    data = write_shards(tmp_path / "shards", [4, 4], damage=lambda key, members: (
        _corrupt_frames({"000000002"})(key, members), _corrupt_frames({"000000006"}, cut_short)(key, members)))
    loader = build_train_loader(_cfg(decode_device="cuda"), data["dir"], 2)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert len(batches) == len(loader) == 4
    for batch in batches:
        assert decode_clips(batch, torch.device("cpu"), SIZE).shape == (2, FRAMES, 3, SIZE, SIZE)
        assert all(":0000000" in key for key in batch["keys"])
    warnings = _warnings(caplog)
    assert "key 000000002: 000000002.000000.jpg: not a JPEG file (no start marker)" in warnings
    assert "key 000000006: 000000006.000000.jpg: JPEG file cut short (no end marker)" in warnings


# a frame that does not decode on the device: tests/data/test_bad_frames.py (its clip is replaced)


# ---------------------------------------------------------------------------------------------- evaluation


def test_evaluation_turns_damaged_samples_into_invalid_ones_keeping_batch_counts(tmp_path, caplog):
    def damage(key, members):
        _corrupt_frames({"000000001"})(key, members)
        if key == "000000006":
            members["cls"] = b"999"

    data = write_shards(tmp_path / "shards", [4, 4, 3], damage=damage)
    truncate_inside(data["dir"] / "shard-000002.tar", "000000009.000001.jpg")  # 9 cut, 10 lost
    with caplog.at_level(logging.WARNING):
        seen, batch_counts = _eval_over_ranks(_cfg(max_bad_samples=10), data["dir"], 2)
    assert batch_counts[0] == batch_counts[1]
    assert Counter({i: len(v) for i, v in seen.items()}) == Counter({i: 1 for i in range(11)})  # exactly once
    assert {i for i, (valid,) in seen.items() if not valid} == {1, 6, 9, 10}
    warnings = _warnings(caplog)
    for needle in ("evaluation: damaged sample counted as invalid (left out of the metrics): shard",
                   "key 000000001: 000000001.000000.jpg: not a JPEG file", "key 000000006: label 999",
                   "key 000000009: truncated tar", "shard-000002.tar: 1 of the manifest's 3 samples are missing"):
        assert needle in warnings, (needle, warnings)


def test_evaluation_stops_past_max_bad_samples(tmp_path):
    data = write_shards(tmp_path / "shards", [4], damage=_corrupt_frames({"000000000", "000000003"}))
    with pytest.raises(TooManyDamagedSamples, match=r"^evaluation: 2 damaged samples .* key 000000003"):
        list(build_eval_loader(_cfg(max_bad_samples=1), data["dir"], 2))


def test_start_up_check_covers_the_validation_shards_too(tmp_path):
    from vidprism_ds.data.loaders import check_shards_at_start

    train = write_shards(tmp_path / "train", [2])
    val = write_shards(tmp_path / "val", [2])
    cfg = _cfg(train_shards=str(train["dir"]), val_shards=str(val["dir"]))
    check_shards_at_start(cfg, num_classes=4)
    (val["dir"] / "shard-000000.tar").unlink()  # would otherwise surface at the first evaluation
    with pytest.raises(FileNotFoundError, match=rf"{val['dir'] / 'manifest.json'} lists .*shard-000000\.tar"):
        check_shards_at_start(cfg, num_classes=4)
    zero_shot = _cfg(dataset="k400", train_shards="", val_shards=str(train["dir"]))
    check_shards_at_start(zero_shot, num_classes=400, train=False, eval_class_names=list(SYNTHETIC_CLASSES))
