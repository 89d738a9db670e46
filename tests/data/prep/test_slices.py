"""Sharding a list as N slices (the SLURM array job) and merging their manifests into one dataset."""

import json
import tarfile

import pytest

from vidprism_ds.data.manifest import load_manifest
from vidprism_ds.data.prep.slices import SliceError, main, merge_slices, parse_slice, slice_rows


@pytest.mark.parametrize("rows,shard_size,count", [(10, 3, 1), (10, 3, 2), (10, 3, 4), (10, 3, 7),
                                                   (128, 16, 5), (1, 4, 3), (257, 32, 8)])
def test_slices_tile_the_list_in_whole_shards_and_evenly(rows, shard_size, count):
    bounds = [slice_rows(rows, shard_size, i, count) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    for (_, stop), (start, _) in zip(bounds, bounds[1:]):
        assert stop == start  # contiguous, no row twice, none left out
    for start, stop in bounds:
        assert start % shard_size == 0 and (stop % shard_size == 0 or stop == rows)
    shards_per_slice = [-(-(stop - start) // shard_size) for start, stop in bounds]
    assert max(shards_per_slice) - min(shards_per_slice) <= 1


@pytest.mark.parametrize("text", ["3", "3/3", "-1/4", "a/b", "1/0"])
def test_bad_slice_specs_are_refused(text):
    with pytest.raises(SliceError):
        parse_slice(text)


def _shard_slice(root, list_file, out, spec, *extra):
    return main(["shard", "--slice", spec, "--root", str(root), "--list", str(list_file), "--out", str(out),
                 "--dataset", "synthetic", "--workers", "1", "--no-progress", "--shard-size", "2", *extra])


def _samples_without_keys(manifest):
    """Every sample's members (frames, label, metadata minus the row number) in manifest order."""
    samples = []
    for shard in manifest.shards:
        with tarfile.open(shard.path) as tar:
            grouped = {}
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                if ext == "json":
                    data = {k: v for k, v in json.loads(data).items() if k != "index"}
                grouped.setdefault(key, {})[ext] = data
            samples += list(grouped.values())
    return samples


def test_three_slices_merge_into_the_dataset_one_run_makes(tmp_path, helpers, capsys):
    rows = helpers.write_synthetic_videos(tmp_path, 7)
    (tmp_path / "videos" / "clip 005.mp4").write_text("not a video")  # slice 2 skips it
    list_file = helpers.write_list(tmp_path / "list.txt", rows)
    single = tmp_path / "single"
    assert helpers.run_shard_cli("--root", str(tmp_path), "--list", str(list_file), "--out", str(single),
                                 "--dataset", "synthetic", "--workers", "1", "--shard-size", "2").returncode == 0

    out = tmp_path / "sliced"
    assert _shard_slice(tmp_path, list_file, out, "2/3") == 0
    assert _shard_slice(tmp_path, list_file, out, "0/3") == 0
    assert merge_slices(out) == (None, [1])
    assert main(["merge", "--out", str(out)]) == 2  # unfinished slices are an error ...
    assert main(["merge", "--out", str(out), "--if-complete"]) == 0  # ... or, in the array job, a message
    assert "1 slice(s) not finished yet: 1" in capsys.readouterr().out
    assert not (out / "manifest.json").exists()

    assert _shard_slice(tmp_path, list_file, out, "1/3") == 0
    assert main(["merge", "--out", str(out), "--if-complete"]) == 0
    merged, reference = load_manifest(out), load_manifest(single)
    assert merged.num_samples == reference.num_samples == 6
    assert merged.raw["num_videos_listed"] == 7
    assert [s["rows"] for s in merged.raw["shards"]] == [s["rows"] for s in reference.raw["shards"]]
    assert [s.samples for s in merged.shards] == [s.samples for s in reference.shards]
    assert [(i["index"], i["path"]) for i in merged.raw["skipped"]] == \
           [(i["index"], i["path"]) for i in reference.raw["skipped"]] == [(5, str(tmp_path / "videos/clip 005.mp4"))]
    assert _samples_without_keys(merged) == _samples_without_keys(reference)


def test_merge_refuses_slices_made_with_other_settings(tmp_path, helpers):
    rows = helpers.write_synthetic_videos(tmp_path, 4)
    list_file = helpers.write_list(tmp_path / "list.txt", rows)
    out = tmp_path / "sliced"
    assert _shard_slice(tmp_path, list_file, out, "0/2") == 0
    assert _shard_slice(tmp_path, list_file, out, "1/2", "--max-frames", "4") == 0
    with pytest.raises(SliceError, match="frame_settings differs"):
        merge_slices(out)
    assert main(["merge", "--out", str(out)]) == 2


def test_merge_refuses_a_single_run_directory_and_ambiguous_counts(tmp_path, helpers):
    rows = helpers.write_synthetic_videos(tmp_path, 4)
    list_file = helpers.write_list(tmp_path / "list.txt", rows)
    single = tmp_path / "single"
    helpers.shard_in_process(tmp_path, list_file, single, shard_size=2)
    with pytest.raises(SliceError, match="single data_prep/shard.py run"):
        merge_slices(single)
    out = tmp_path / "sliced"
    assert _shard_slice(tmp_path, list_file, out, "0/1") == 0
    assert _shard_slice(tmp_path, list_file, out, "0/2") == 0
    with pytest.raises(SliceError, match="pass --slices N"):
        merge_slices(out)
    merged, missing = merge_slices(out, count=1)
    assert missing == [] and merged["num_samples"] == 4
