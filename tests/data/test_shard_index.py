"""Shard member indexes (issue 30): written by the sharder with each shard, built once for older shards by
``data_prep/index_shards.py``, and noticed when they no longer match their shard."""

import json
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from tests.data.test_damaged_data import write_shards
from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import build_train_loader
from vidprism_ds.data.shard_index import index_path, load_index, scan_shard, write_index_file
from vidprism_ds.data.train_source import ShardReader

REPO = Path(__file__).resolve().parents[2]


def _members_by_tarfile(path: Path) -> dict[str, tuple[int, int]]:
    with tarfile.open(path) as tar:
        return {info.name: (info.offset_data, info.size) for info in tar if info.isreg()}


def test_the_sharder_writes_each_shard_s_index_with_the_offsets_tarfile_reads(tiny_shards):
    manifest = json.loads((tiny_shards["train"] / "manifest.json").read_text())
    for shard in manifest["shards"]:
        path = tiny_shards["train"] / shard["name"]
        indexed = load_index(path)
        assert indexed is not None and len(indexed) == shard["samples"]
        assert indexed == scan_shard(path)[0]
        expected = _members_by_tarfile(path)
        assert {f"{key}.{ext}": span for key, members in indexed for ext, span in members.items()} == expected
        with open(path, "rb") as file:  # an offset is where the member's bytes start
            name, (offset, size) = next(iter(expected.items()))
            file.seek(offset)
            with tarfile.open(path) as tar:
                assert file.read(size) == tar.extractfile(name).read()


def test_the_index_command_writes_the_missing_indexes_and_keeps_valid_ones(tmp_path):
    data = write_shards(tmp_path / "shards", [3, 2])  # written by hand, as before indexes existed
    shards = sorted(data["dir"].glob("*.tar"))
    assert not any(index_path(p).exists() for p in shards)
    command = [sys.executable, str(REPO / "data_prep" / "index_shards.py"), str(data["dir"])]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    assert "2 index(es) written, 0 already valid" in done.stdout
    assert [len(load_index(p)) for p in shards] == [3, 2]
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    assert "0 index(es) written, 2 already valid" in again.stdout
    missing = subprocess.run([*command[:2], str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "no such shard folder" in missing.stderr


def test_without_an_index_the_loader_reads_the_headers_and_warns_once_at_build(tmp_path, caplog):
    data = write_shards(tmp_path / "shards", [4, 4])
    cfg = DataConfig(dataset="synthetic", num_frames=4, image_size=32, num_workers=0)
    with caplog.at_level(logging.WARNING):
        unindexed = build_train_loader(cfg, data["dir"], 2, seed=1)
    assert "2 of 2 shards in" in caplog.text and "data_prep/index_shards.py" in caplog.text
    before = list(unindexed)
    for path in data["dir"].glob("*.tar"):
        write_index_file(path, scan_shard(path)[0], path.stat().st_size)
    after = list(build_train_loader(cfg, data["dir"], 2, seed=1))
    assert [b["index"].tolist() for b in before] == [b["index"].tolist() for b in after]
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(before, after))


def test_an_index_that_no_longer_matches_its_shard_is_noticed_and_the_headers_read_instead(tmp_path, caplog):
    data = write_shards(tmp_path / "shards", [2])
    path = data["dir"] / "shard-000000.tar"
    samples = scan_shard(path)[0]
    # an index of the right size whose offsets are one block off: every read meets another header
    shifted = [(key, {ext: (offset + 512, size) for ext, (offset, size) in members.items()}) for key, members in samples]
    write_index_file(path, shifted, path.stat().st_size)
    reader = ShardReader([(str(path), 2)])
    with caplog.at_level(logging.WARNING):
        sample = reader.sample(1)
        assert json.loads(sample["json"].read())["label"] == 1
    assert "its member index does not match the shard" in caplog.text
    with tarfile.open(path) as tar:
        assert sample["000000.jpg"].read() == tar.extractfile("000000001.000000.jpg").read()


def test_a_resumed_sharding_run_indexes_the_finished_shards_that_have_no_index(tmp_path, helpers):
    rows = helpers.write_synthetic_videos(tmp_path, 4, frames=8)
    list_file = helpers.write_list(tmp_path / "list.txt", rows)
    out = tmp_path / "shards"
    helpers.shard_in_process(tmp_path, list_file, out, shard_size=2, max_frames=8, burst_count=0)
    indexes = sorted(out.glob("*.idx.json"))
    written = {path.name: path.read_bytes() for path in indexes}
    assert len(written) == 2
    for path in indexes:  # as a run from before indexes left them
        path.unlink()
    helpers.shard_in_process(tmp_path, list_file, out, shard_size=2, max_frames=8, burst_count=0)
    assert {path.name: path.read_bytes() for path in sorted(out.glob("*.idx.json"))} == written
