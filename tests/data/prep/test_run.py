"""The sharding engine: isolation of crashing/hanging decodes, resume rules, deterministic output."""

import faulthandler
import json
import os
import signal
import time

import pytest

from vidprism_ds.data.prep.encode import EncodeTask, encode_video
from vidprism_ds.data.prep.run import SettingsMismatch, ShardJob, run_sharding
from vidprism_ds.data.sampling import FrameSettings
from vidprism_ds.data.video_lists import read_video_list


def _encode_or_misbehave(task: EncodeTask):
    name = os.path.basename(task.path)
    if name == "crash.mp4":
        faulthandler.disable()
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "hang.mp4":
        time.sleep(600)
    return encode_video(task)


def _job(root, list_file, out_dir, **overrides):
    entries, classes = read_video_list(list_file, root, "auto", ["a", "b", "c", "d"])
    settings = dict(entries=entries, out_dir=out_dir, frames=FrameSettings(max_frames=8), classes=classes,
                    num_classes=4, source={"sha256": "x"}, shard_size=2, workers=2, timeout_s=30.0,
                    mp_context="fork")
    settings.update(overrides)
    return ShardJob(**settings)


@pytest.mark.slow
def test_a_crashing_or_hanging_decode_is_recorded_and_the_run_completes(tmp_path, make_rows):
    rows = make_rows(tmp_path, 4)
    rows.insert(1, ("crash.mp4", 0))
    rows.insert(4, ("hang.mp4", 1))
    (tmp_path / "list.txt").write_text("".join(f"{r} {l}\n" for r, l in rows))
    job = _job(tmp_path, tmp_path / "list.txt", tmp_path / "out", timeout_s=2.0)
    summary = run_sharding(job, encode_fn=_encode_or_misbehave, progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert summary.samples == manifest["num_samples"] == 4
    reasons = {item["index"]: item["reason"] for item in manifest["skipped"]}
    assert reasons[1] == "crashed (SIGSEGV)"
    assert reasons[4].startswith("timed out after 2 s")
    assert summary.workers_replaced == 2
    assert [s["samples"] for s in manifest["shards"]] == [1, 2, 1]


def test_resume_keeps_finished_shards_and_clears_partials(tmp_path, make_rows):
    rows = make_rows(tmp_path, 5)
    (tmp_path / "list.txt").write_text("".join(f"{r} {l}\n" for r, l in rows))
    out = tmp_path / "out"
    run_sharding(_job(tmp_path, tmp_path / "list.txt", out, workers=1), progress=False)
    first = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert sorted(first) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    # simulate a kill: the last shard's tar vanished mid-write and a partial is lying around
    kept_mtime = (out / "shard-000000.tar").stat().st_mtime_ns
    (out / "shard-000002.tar").unlink()
    (out / ".shard-000002.tar.partial").write_bytes(b"half")
    summary = run_sharding(_job(tmp_path, tmp_path / "list.txt", out, workers=1), progress=False)
    assert summary.shards_reused == 2
    assert not list(out.glob(".*.partial"))
    assert (out / "shard-000000.tar").stat().st_mtime_ns == kept_mtime  # not rewritten
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == first  # same bytes as before


def test_resume_with_other_settings_is_refused(tmp_path, make_rows):
    rows = make_rows(tmp_path, 2)
    (tmp_path / "list.txt").write_text("".join(f"{r} {l}\n" for r, l in rows))
    out = tmp_path / "out"
    run_sharding(_job(tmp_path, tmp_path / "list.txt", out, workers=1), progress=False)
    with pytest.raises(SettingsMismatch, match="frame_settings"):
        run_sharding(_job(tmp_path, tmp_path / "list.txt", out, workers=1, frames=FrameSettings(max_frames=4)),
                     progress=False)
